# cython: language_level=3
"""Where a reading is entered as soon as it is read, from whichever thread read it: the
continuous-read snapshot and its meter's health.

Compiled: a line's thread enters every reading of continuous mode right after waking for its
answer, when each interpreted step costs many times what it costs warm.
"""

import threading

from mbusgw.gateway.health import MeterHealth


cdef class Ledger:
    """The snapshot (``LiveSnapshot``) and the health of each meter (by key; the dict is the
    gateway's, read in trio) a reading goes into."""

    cdef readonly object live
    cdef readonly dict health
    cdef object _lock  # a line's thread records a reading in its meter's health; trio the others

    def __init__(self, live, dict health) -> None:
        self.live = live
        self.health = health
        self._lock = threading.Lock()

    def expect(self, meters) -> None:
        """In trio: a health ("never" read) for each of ``meters`` that has none, so that a
        line's thread records each of their readings."""
        with self._lock:
            for meter in meters:
                if meter.key not in self.health:
                    self.health[meter.key] = MeterHealth(meter.key)

    def enter(self, reading, double now) -> tuple:
        """From a line's thread: the reading into the snapshot, stamped with ``now`` (trio time),
        and into its meter's health if the meter has one. Returns whether a trio task waits for
        a change, whether the health recorded it, and the event its outcome causes."""
        waited_for = self.publish(reading, now)
        recorded, event = self.record(reading, False)
        return waited_for, recorded, event

    def publish(self, reading, double now) -> bool:
        """From any thread: the reading into the snapshot, visible from ``now`` (trio time);
        returns whether a trio task waits for a change."""
        return self.live.put(reading.live(now))

    def record(self, reading, bint create) -> tuple:
        """From any thread: the reading in its meter's health; returns whether it was recorded
        and the event its outcome causes. A meter's first health is made only when ``create``
        (in trio: the readers go through the dict there, which another thread must not grow);
        the copy recorded in takes the old one's place whole, so that a reader in another
        thread never sees half of it."""
        key = reading.meter.key
        cdef bint ok = reading.ok
        with self._lock:
            health = self.health.get(key)
            if health is None:
                if not create:
                    return False, None
                health = MeterHealth(key)
            else:
                health = health.copy()
            event = health.record(
                reading.read_at,
                ok,
                retries=max(reading.attempts - 1, 0),
                response_ms=reading.duration * 1000 if ok else None,
                error=reading.error,
            )
            self.health[key] = health
        return True, event
