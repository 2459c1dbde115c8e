"""The continuous-read snapshot: the latest reading of each meter, in memory only.

Continuous read mode writes here and never to the database. REST, Modbus and JSON-RPC read
from here; ``wait_for_change`` lets a consumer follow updates without polling, and
``changes_since`` tells it which readings are new without going through every meter.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import trio

RECENT = 256  # updates kept for ``changes_since``


@dataclass(frozen=True, slots=True)
class LiveReading:
    meter_key: str
    read_at: datetime  # wall time (UTC) when the reply ended
    ok: bool
    telegrams: tuple[Any, ...] = ()  # decoded telegrams of the reading (multi-telegram: several)
    error: str | None = None
    reply_ended: float = 0.0  # trio time when the reply ended
    published: float = 0.0  # trio time it became visible here (minus reply_ended: the latency)


class LiveSnapshot:
    def __init__(self) -> None:
        self._readings: dict[str, LiveReading] = {}
        self._last_good: dict[str, LiveReading] = {}
        self.version = 0
        self._changed = trio.Event()
        self._recent: deque[LiveReading] = deque(maxlen=RECENT)

    def update(self, reading: LiveReading) -> None:
        self._readings[reading.meter_key] = reading
        if reading.ok:
            self._last_good[reading.meter_key] = reading
        self.version += 1
        self._recent.append(reading)
        self._changed.set()
        self._changed = trio.Event()

    def latest(self, meter_key: str) -> LiveReading | None:
        """The latest attempt, good or failed."""
        return self._readings.get(meter_key)

    def last_good(self, meter_key: str) -> LiveReading | None:
        """The latest successful reading (what a PLC wants, with its age)."""
        return self._last_good.get(meter_key)

    def all_last_good(self) -> dict[str, LiveReading]:
        return dict(self._last_good)

    def changes_since(self, version: int) -> list[LiveReading]:
        """The updates after ``version``, oldest first; at most the last ``RECENT`` of them (a
        consumer that has fallen further behind reads the whole snapshot instead)."""
        count = min(self.version - version, len(self._recent))
        if count <= 0:
            return []
        return list(itertools.islice(self._recent, len(self._recent) - count, None))

    def forget(self, meter_keys: set[str]) -> None:
        """Drop meters that were uninstalled."""
        for key in meter_keys:
            self._readings.pop(key, None)
            self._last_good.pop(key, None)

    async def wait_for_change(self, version: int) -> int:
        """Wait until the snapshot is newer than ``version``; returns the new version."""
        while self.version <= version:
            await self._changed.wait()
        return self.version
