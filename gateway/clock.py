"""Wall-clock time (UTC seconds since the epoch), injectable so tests run on trio's MockClock.

Durations and timeouts use trio's clock directly; this is only for time *stamps* (log entries,
reception times) and for deadlines that are naturally wall-clock (the system log's one-minute
silencing window). ``TrioWallClock`` derives wall time from ``trio.current_time()``, so under
``MockClock`` "a minute later" takes no real time and stays consistent with ``trio.sleep``.
"""

from __future__ import annotations

import time
from typing import Protocol

import trio


class WallClock(Protocol):
    def now(self) -> float:
        """Seconds since 1970-01-01T00:00:00Z."""
        ...


class SystemClock:
    """The host's clock (kept by the OS, NTP)."""

    def now(self) -> float:
        return time.time()


class TrioWallClock:
    """``epoch + trio.current_time()``: wall time that follows trio's (possibly mock) clock."""

    def __init__(self, epoch: float | None = None) -> None:
        self._offset = (time.time() - trio.current_time()) if epoch is None else epoch

    def now(self) -> float:
        try:
            return self._offset + trio.current_time()
        except RuntimeError:  # a worker thread started by trio.to_thread
            return self._offset + trio.from_thread.run_sync(trio.current_time)


class FixedClock:
    """A clock that stands still until told otherwise (for synchronous code and tests)."""

    def __init__(self, now: float) -> None:
        self.time = now

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds
