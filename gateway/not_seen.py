"""The not-seen watch: "meter not seen" once per outage for an active meter with no good reading
for the configured time (counted from the start for a meter not read since)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import trio

from mbusgw.gateway.events import METER_NOT_SEEN, Event
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.parts import Shared
from mbusgw.gateway.registry import MeterRegistry
from mbusgw.gateway.supervisor import WARNING

CHECK_EVERY_S = 60


class NotSeenWatch:
    name = "not-seen-watch"

    def __init__(
        self,
        registry: MeterRegistry,
        health: dict[str, MeterHealth],
        shared: Shared,
        started_at: Callable[[], datetime | None],
    ) -> None:
        self.registry = registry
        self.health = health
        self._settings = shared.settings
        self._started_at = started_at
        self.clock = shared.clock
        self.events = shared.events
        self._log = shared.log
        self._reported: set[str] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(CHECK_EVERY_S)
            self.check()

    def check(self) -> list[str]:
        """Publish "meter not seen" for the meters newly silent; returns their keys."""
        limit = self._settings().reading.not_seen_after_min * 60
        if not limit:
            return []
        now = self.clock.now()
        reported = []
        for meter in self.registry.active():
            health = self.health.get(meter.key)
            last = health.last_good if health else None
            since = last or self._started_at()
            if since is None or (now - since).total_seconds() < limit:
                self._reported.discard(meter.key)
            elif meter.key not in self._reported:
                self._reported.add(meter.key)
                reported.append(meter.key)
                detail = {"last_good": last.isoformat() if last else None}
                self.events.publish(Event(METER_NOT_SEEN, now, meter.key, detail))
                self._log(WARNING, meter.key, f"not read successfully for {limit // 60} min")
        return reported
