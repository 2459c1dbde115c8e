"""Wall-clock time for the gateway, kept apart from trio's monotonic clock.

Schedules and timestamps need the date and time of day; timeouts and sleeps use trio's clock.
``TrioWallClock`` derives the wall time from trio's clock, so under ``MockClock`` "fifteen
minutes later" takes microseconds and schedules are tested exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

import trio


class WallClock(Protocol):
    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...


class SystemClock:
    """The operating system's time (kept by NTP on a general-purpose host)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class TrioWallClock:
    """Wall time = a fixed epoch + trio's clock; with MockClock, time follows the mock."""

    def __init__(self, epoch: datetime) -> None:
        if epoch.tzinfo is None:
            raise ValueError("the epoch must be an aware datetime")
        self._epoch = epoch.astimezone(UTC)
        # the run's clock object rather than ``trio.current_time``: it can be read from a
        # line's thread too (a reading is stamped where it is read)
        self._clock = trio.lowlevel.current_clock()
        self._start = self._clock.current_time()

    def now(self) -> datetime:
        return self._epoch + timedelta(seconds=self._clock.current_time() - self._start)


async def sleep_until_wall(clock: WallClock, when: datetime, *, max_step: float = 60.0) -> None:
    """Sleep until the wall clock reaches ``when``.

    Sleeps in steps of at most ``max_step`` seconds of trio time, re-reading the wall clock after
    each, so that a wall-clock jump (NTP correction, manual change) is followed within a step.
    """
    while True:
        remaining = (when - clock.now()).total_seconds()
        if remaining <= 0:
            return
        await trio.sleep(min(remaining, max_step))
