"""Compaction: once a UTC day is over, each meter's rows of that day become one block.

Planning (reading rows, encoding blocks) runs on a read snapshot in a worker thread; applying
is a short write operation that first checks the rows and the block are still exactly what
was planned (a late row from a stepped clock may have arrived) and skips a meter otherwise, to
be planned again next round. Applying writes the block, deletes the rows and records the
meter's first and last block day, all in one transaction: a crash leaves either the rows or
the block, never both or neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lmdb

from mbusgw.gateway.settings import Settings
from mbusgw.gateway.store.blocks import (
    columns_from_rows,
    decode_block,
    encode_block,
    merge_columns,
)
from mbusgw.gateway.store.context import WriteContext
from mbusgw.gateway.store.env import StoreEnv
from mbusgw.gateway.store.keys import (
    DAY_SECONDS,
    SLOT_SECONDS,
    block_key,
    id_key,
    reading_key,
    unpack_reading_key,
)
from mbusgw.gateway.store.queries import TimeRange, meter_rows
from mbusgw.gateway.store.rows import decode_row

if TYPE_CHECKING:
    from mbusgw.gateway.store.store import Store

SLOTS_PER_DAY = DAY_SECONDS // SLOT_SECONDS
METERS_PER_STEP = 32
COMPACTION_INTERVAL = 600.0


@dataclass(frozen=True, slots=True)
class MeterDayPlan:
    meter: int
    row_keys: tuple[bytes, ...]
    old_block: bytes | None
    block: bytes


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    day: int
    meters: tuple[MeterDayPlan, ...]


def oldest_row_day(env: StoreEnv) -> int | None:
    """The oldest day that still has rows waiting for compaction."""
    with env.read() as txn:
        cursor = txn.cursor(db=env.db.readings)
        return unpack_reading_key(cursor.key())[0] // SLOTS_PER_DAY if cursor.first() else None


def closed_before(now: float, settings: Settings) -> int:
    """Days before this one are over (plus the grace period) and may be compacted."""
    grace = settings.store.compact_after_hours * 3600
    return (int(now) - grace) // DAY_SECONDS


def meters_with_rows(env: StoreEnv, day: int) -> list[int]:
    """Meter ids that have rows in ``day`` (a key-only scan of the day's slots)."""
    meters: set[int] = set()
    end = reading_key((day + 1) * SLOTS_PER_DAY, 0, 0)
    with env.read() as txn:
        cursor = txn.cursor(db=env.db.readings)
        found = cursor.set_range(reading_key(day * SLOTS_PER_DAY, 0, 0))
        while found and cursor.key() < end:
            meters.add(unpack_reading_key(cursor.key())[1])
            found = cursor.next()
    return sorted(meters)


def _day_rows(txn: lmdb.Transaction, env: StoreEnv, meter: int, day: int) -> list:
    span = TimeRange(day * DAY_SECONDS, (day + 1) * DAY_SECONDS)
    return meter_rows(txn, env.db.readings, meter, span, keys=True)


def plan_day(env: StoreEnv, day: int, meters: list[int]) -> CompactionPlan:
    """Encode the blocks of ``meters`` for ``day`` from a snapshot (no write lock held)."""
    gathered = []
    with env.read() as txn:
        for meter in meters:
            items = _day_rows(txn, env, meter, day)
            if items:
                gathered.append((meter, items, txn.get(block_key(day, meter), db=env.db.blocks)))
    plans = []
    for meter, items, old_block in gathered:
        columns = columns_from_rows([decode_row(value) for _, value in items])
        if old_block is not None:
            columns = merge_columns(decode_block(old_block), columns)
        plans.append(
            MeterDayPlan(meter, tuple(key for key, _ in items), old_block, encode_block(columns))
        )
    return CompactionPlan(day, tuple(plans))


def apply_plan(ctx: WriteContext, plan: CompactionPlan) -> int:
    """Write the planned blocks whose sources are unchanged; returns how many were written."""
    written = 0
    blocks = ctx.db.blocks
    for meter in plan.meters:
        key = block_key(plan.day, meter.meter)
        current = tuple(k for k, _ in _day_rows(ctx.txn, ctx.env, meter.meter, plan.day))
        if current != meter.row_keys or ctx.txn.get(key, db=blocks) != meter.old_block:
            continue
        # a day's blocks usually land after every key: appending fills pages completely
        cursor = ctx.txn.cursor(db=blocks)
        at_end = not cursor.last() or cursor.key() < key
        cursor.put(key, meter.block, append=at_end)
        for row_key in meter.row_keys:
            ctx.txn.delete(row_key, db=ctx.db.readings)
        _record_day(ctx, meter.meter, plan.day)
        written += 1
    return written


def _record_day(ctx: WriteContext, meter: int, day: int) -> None:
    raw = ctx.txn.get(id_key(meter), db=ctx.db.meters)
    record = json.loads(raw)
    first, last = record.get("first_day"), record.get("last_day")
    record["first_day"] = day if first is None else min(first, day)
    record["last_day"] = day if last is None else max(last, day)
    ctx.txn.put(id_key(meter), json.dumps(record).encode(), db=ctx.db.meters)


def compact_now(store: Store) -> int:
    """Compact every closed day synchronously (the CLI and tests; the service works in steps)."""
    written = 0
    before = closed_before(store.now(), store.settings)
    while (day := oldest_row_day(store.env)) is not None and day < before:
        meters = meters_with_rows(store.env, day)
        done = 0
        for start in range(0, len(meters), METERS_PER_STEP):
            plan = plan_day(store.env, day, meters[start : start + METERS_PER_STEP])
            done += store.write(lambda ctx, plan=plan: apply_plan(ctx, plan))
        if not done:  # nothing could be applied: leave the day for the next round
            break
        written += done
    return written
