# cython: language_level=3
"""Per-meter health: success rate, retries, response time, last good reading; the transitions
(failed, recovered) become events.

Compiled: a line's thread records every reading of continuous mode here, right after waking
for its answer, when each interpreted step costs many times what it costs warm.
"""

cimport cython

from mbusgw.gateway.events import METER_FAILED, METER_RECOVERED, Event

WINDOW = 96  # the success rate covers the last 96 readings (a day at 15-minute readings)
cdef object _WINDOW_MASK = (1 << WINDOW) - 1
cdef int _WINDOW = WINDOW


# One per meter, kept while the gateway runs: the window as the bits of one int (instead of a
# deque of 96 booleans) holds 512 meters in about a sixth of the memory.
@cython.dataclasses.dataclass
cdef class MeterHealth:
    meter_key: str
    readings: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_attempt: object = None  # datetime
    last_good: object = None  # datetime
    last_error: object = None  # str
    last_retries: int = 0
    last_response_ms: object = None  # float
    # the last ``_counted`` (at most WINDOW) outcomes, the newest in the lowest bit (1: good)
    _outcomes: object = cython.dataclasses.field(default=0, repr=False)
    _counted: int = cython.dataclasses.field(default=0, repr=False)

    @property
    def success_rate(self) -> float | None:
        if not self._counted:
            return None
        return self._outcomes.bit_count() / self._counted

    @property
    def status(self) -> str:
        """``ok`` (last read good), ``failed`` (last read failed) or ``never`` (not read yet)."""
        if self.last_attempt is None:
            return "never"
        return "failed" if self.consecutive_failures else "ok"

    def record(
        self,
        at,
        bint ok,
        *,
        retries: int = 0,
        response_ms=None,
        error=None,
    ) -> Event | None:
        """Account one reading; returns the event its outcome causes, if any."""
        cdef bint failed_before = self.status == "failed"
        self.readings += 1
        self.last_attempt = at
        self.last_retries = retries
        self._outcomes = ((self._outcomes << 1) | ok) & _WINDOW_MASK
        self._counted = min(self._counted + 1, _WINDOW)
        if ok:
            self.consecutive_failures = 0
            self.last_good = at
            self.last_response_ms = response_ms
            self.last_error = None
            if failed_before:
                return Event(METER_RECOVERED, at, self.meter_key)
            return None
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = error
        if not failed_before:
            return Event(METER_FAILED, at, self.meter_key, {"error": error})
        return None

    def copy(self) -> MeterHealth:
        """The same health as a new object: a reading is recorded in a copy that then takes
        the place of this one, so that a reader in another thread never sees half of it."""
        return MeterHealth(
            self.meter_key,
            self.readings,
            self.failures,
            self.consecutive_failures,
            self.last_attempt,
            self.last_good,
            self.last_error,
            self.last_retries,
            self.last_response_ms,
            self._outcomes,
            self._counted,
        )

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "readings": self.readings,
            "failures": self.failures,
            "success_rate": self.success_rate,
            "last_attempt": self.last_attempt.isoformat() if self.last_attempt else None,
            "last_good": self.last_good.isoformat() if self.last_good else None,
            "last_error": self.last_error,
            "last_retries": self.last_retries,
            "last_response_ms": self.last_response_ms,
        }
