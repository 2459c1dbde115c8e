# cython: language_level=3
"""The continuous-read snapshot: the latest reading of each meter, in memory only.

Continuous read mode writes here and never to the database. REST, Modbus and JSON-RPC read
from here; ``wait_for_change`` lets a consumer follow updates without polling, and
``changes_after`` tells it which readings are new without going through every meter.

A reading may be put here from a line's thread (``put``) as soon as it is read, so that it is
visible before trio has run; the readers take the same lock. Waking the trio tasks that wait
for a change (``notify``) is done in trio, with the rest of the reading's accounting; ``put``
tells whether any task waits, so that trio need not be woken for a reading nobody waits for.

Compiled: a line's thread puts every reading of continuous mode here right after waking for its
answer, when each interpreted step costs many times what it costs warm.
"""

cimport cython

import itertools
import threading
from collections import deque

import trio

RECENT = 256  # updates kept for ``changes_after``


@cython.dataclasses.dataclass(frozen=True)
cdef class LiveReading:
    meter_key: str
    read_at: object  # wall time (UTC, a datetime) when the reply ended
    ok: cython.bint
    telegrams: tuple = ()  # decoded telegrams of the reading (multi-telegram: several)
    error: object = None  # str
    reply_ended: cython.double = 0.0  # trio time when the reply ended
    # trio time it became visible here (minus ``reply_ended``: the latency)
    published: cython.double = 0.0


class LiveSnapshot:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # ``put`` may run in a line's thread
        self._readings: dict[str, LiveReading] = {}
        self._last_good: dict[str, LiveReading] = {}
        self.version = 0
        self._changed = trio.Event()
        self._waiting = 0  # tasks in ``wait_for_change`` (counted under the lock)
        self._recent: deque[LiveReading] = deque(maxlen=RECENT)

    def update(self, reading: LiveReading) -> None:
        """In trio: put ``reading`` and wake the waiters at once."""
        self.put(reading)
        self.notify()

    def put(self, reading: LiveReading) -> bool:
        """From any thread: make ``reading`` the meter's latest; the trio tasks waiting for a
        change learn of it at the next ``notify``. Returns whether any task waits: a task
        that starts waiting after this sees the new version and does not wait."""
        with self._lock:
            self._readings[reading.meter_key] = reading
            if reading.ok:
                self._last_good[reading.meter_key] = reading
            self.version += 1
            self._recent.append(reading)
            return self._waiting > 0

    def notify(self) -> None:
        """In trio: wake the tasks waiting in ``wait_for_change`` (none: nothing to do)."""
        if self._waiting:
            self._changed.set()
            self._changed = trio.Event()

    def latest(self, meter_key: str) -> LiveReading | None:
        """The latest attempt, good or failed."""
        with self._lock:
            return self._readings.get(meter_key)

    def last_good(self, meter_key: str) -> LiveReading | None:
        """The latest successful reading (what a PLC wants, with its age)."""
        with self._lock:
            return self._last_good.get(meter_key)

    def all_last_good(self) -> dict[str, LiveReading]:
        with self._lock:
            return dict(self._last_good)

    def changes_after(self, version: int) -> tuple[int, list[LiveReading]]:
        """The current version and the updates after ``version``, oldest first, read together: a
        line's thread may put a reading between two separate looks. At most the last ``RECENT``
        are kept: fewer updates than versions in between means the consumer fell behind the
        window (it reads the whole snapshot instead)."""
        with self._lock:
            count = min(self.version - version, len(self._recent))
            if count <= 0:
                return self.version, []
            recent = self._recent
            return self.version, list(itertools.islice(recent, len(recent) - count, None))

    def forget(self, meter_keys: set[str]) -> None:
        """Drop meters that were uninstalled."""
        with self._lock:
            for key in meter_keys:
                self._readings.pop(key, None)
                self._last_good.pop(key, None)

    async def wait_for_change(self, version: int) -> int:
        """Wait until the snapshot is newer than ``version``; returns the new version."""
        while True:
            with self._lock:  # ``put`` counts the waiters under it too
                if self.version > version:
                    return self.version
                self._waiting += 1
                changed = self._changed
            try:
                await changed.wait()
            finally:
                with self._lock:
                    self._waiting -= 1
