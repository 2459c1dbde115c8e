"""The store's maintenance as supervised services: compaction of closed days and retention.

They sit above the writer they submit to (the work itself is in ``compaction`` and
``retention``, which the writer's batches also use).
"""

from __future__ import annotations

import trio

from mbusgw.gateway.store.compaction import (
    COMPACTION_INTERVAL,
    METERS_PER_STEP,
    apply_plan,
    closed_before,
    meters_with_rows,
    oldest_row_day,
    plan_day,
)
from mbusgw.gateway.store.retention import DELETE_CHUNK, RETENTION_INTERVAL, apply_retention
from mbusgw.gateway.store.writer import StoreWriter


class CompactionService:
    """Compacts closed days in steps of ``METERS_PER_STEP`` meters (a supervised service)."""

    name = "store-compaction"

    def __init__(self, writer: StoreWriter, *, interval: float = COMPACTION_INTERVAL) -> None:
        self.writer = writer
        self.interval = interval

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.compact_closed_days()
            await trio.sleep(self.interval)

    async def compact_closed_days(self) -> int:
        """Compact every closed day; returns the number of blocks written."""
        store = self.writer.store
        env = store.env
        written = 0
        while True:
            before = closed_before(store.now(), store.settings)
            day = await self.writer.offload(oldest_row_day, env)
            if day is None or day >= before:
                return written
            meters = await self.writer.offload(meters_with_rows, env, day)
            done = 0
            for start in range(0, len(meters), METERS_PER_STEP):
                chunk = meters[start : start + METERS_PER_STEP]
                plan = await self.writer.offload(plan_day, env, day, chunk)
                done += await self.writer.submit(lambda ctx, plan=plan: apply_plan(ctx, plan))
            if not done:  # nothing could be applied: leave the day for the next round
                return written
            written += done


class RetentionService:
    """Applies the caps and age limits every ``interval`` seconds (a supervised service)."""

    name = "store-retention"

    def __init__(self, writer: StoreWriter, *, interval: float = RETENTION_INTERVAL) -> None:
        self.writer = writer
        self.interval = interval

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            # chunks until a pass removes less than a full chunk
            while await self.writer.submit(apply_retention) >= DELETE_CHUNK:
                await trio.sleep(0)
            await trio.sleep(self.interval)
