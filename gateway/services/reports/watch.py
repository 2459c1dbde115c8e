"""``meter_not_seen`` events: a meter whose newest stored value is older than the configured
time is reported once; when it delivers values again, it can be reported again."""

from __future__ import annotations

import datetime as dt

import numpy as np
import trio

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.events import METER_NOT_SEEN, Event, EventBus
from mbusgw.gateway.store import Store

MAX_CHECK_INTERVAL_S = 300.0


class NotSeenWatch:
    def __init__(self, store: Store, clock: WallClock, events: EventBus, after_s: float) -> None:
        self.store = store
        self.clock = clock
        self.events = events
        self.after_s = after_s
        self.silent: set[str] = set()

    async def run(self) -> None:
        interval = min(MAX_CHECK_INTERVAL_S, max(1.0, self.after_s / 4))
        while True:
            self.check()
            await trio.sleep(interval)

    def newest(self) -> dict[str, int]:
        """Each meter's newest reception time of any value."""
        latest = self.store.latest()
        meter_of = {info.id: info.meter for info in self.store.series()}
        newest: dict[str, int] = {}
        for series, received in zip(
            latest.series.tolist(), latest.received_at.tolist(), strict=True
        ):
            meter = meter_of.get(series)
            if meter is not None and received > newest.get(meter, -1):
                newest[meter] = received
        return newest

    def check(self) -> list[str]:
        """Publish an event for each meter that has just become silent; returns their names."""
        now = self.clock.now()
        limit = now.timestamp() - self.after_s
        reported = []
        for meter, received in sorted(self.newest().items()):
            if received >= limit:
                self.silent.discard(meter)
            elif meter not in self.silent:
                self.silent.add(meter)
                reported.append(meter)
                last = dt.datetime.fromtimestamp(received, dt.UTC).isoformat()
                minutes = int(np.floor(self.after_s / 60))
                self.events.publish(
                    Event(METER_NOT_SEEN, now, meter, {"last_value": last, "minutes": minutes})
                )
        return reported
