# cython: language_level=3
"""The wired M-Bus exchange as a sans-I/O state machine: one ``BusProtocol`` per line.

It holds everything a master decides on a line, and nothing it does: a driver (the trio task
of ``gateway.bus``, or a native loop of its own) starts a job (``read``, ``ping``, ``probe_*``,
``application_reset``, ``transfer``), feeds it what the line received (``receive``) and the
time (``tick``), writes what ``take_output`` gives at once, wakes at ``deadline``, and collects
``pop_events``: every ``Exchange`` as it ends, ``Telegram`` progress, and the job's end as
``Done`` or ``Failed``. The machine never reads a clock: every time comes in as an argument.

The rules (EN 13757-2, SPEC table 8):

* the inter-frame gap after the line's last activity; bytes that come between exchanges are
  stray (late answers, noise) and are counted;
* an answer is timed from the end of the request on the wire (``len × 11 bit``): silence until
  the response timeout plus one character means no answer. A complete, valid frame ends the
  reception at once; anything else (a bad checksum, two frames, bytes left over) is garbled,
  i.e. a collision: the master then listens until the answer window has closed, and sends
  again only after the line has been silent for the collision recovery time. Scan probes
  listen until the window closes even after a clean answer (a second, slower meter);
* the echo of the request that some converters send back is removed;
* retries per the timing, the FCB toggled for each further telegram of a multi-telegram answer
  and repeated after a lost answer, and the meter's addressing modes tried in turn;
* back to back (``keep_link``), no SND_NKE before a primary read while the meter's link state
  is known (``LinkStates``), after one broadcast SND_NKE for the line;
* every attempt has a hard bound on its total time whatever the line does: an answer window
  closes at the latest when the longest frame that could have started in it is over, and the
  wait for a quiet line before a retry ends after the recovery time plus one longest frame.
  A line that does not go quiet in that time fails the job at once with ``NOISY`` (a per-meter
  status), so the driver goes on with the next job.

``times`` objects are read for ``char``, ``response``, ``latency``, ``gap``, ``recovery``,
``after_init``, ``read_attempts``, ``select_attempts``, ``char_gap`` and ``no_answer``.
"""

import enum
import math
from dataclasses import dataclass

from mbusgw.core.frame import (
    Discarded,
    FrameParser,
    LongFrame,
    ShortFrame,
    SingleChar,
    application_reset,
    req_ud2,
    snd_nke,
)

ADDRESS_SELECTED = 0xFD
ADDRESS_BROADCAST = 0xFF  # every meter listens, none answers
LONG_START = 0x68
LONG_OVERHEAD = 6  # 68 L L 68 ... CS 16 around the L bytes of a long frame
LONG_FRAME_MAX = 255 + LONG_OVERHEAD  # the longest frame a meter can send
RSP_UD_FUNCTION = 0x08  # C field of a slave's user data, without the ACD/DFC bits

# why a job failed (``Failed.kind``)
NO_RESPONSE = "no_response"
COLLISION = "collision"
NOISY = "noisy"  # the line did not go quiet within the attempt's bound


class Outcome(enum.Enum):
    ANSWER = "answer"
    SILENT = "silent"
    GARBLED = "garbled"


class ProbeKind(enum.Enum):
    EMPTY = "empty"  # nobody answered
    FOUND = "found"  # exactly one meter, with its telegram
    COLLISION = "collision"  # several meters (or noise): narrow the search
    UNREADABLE = "unreadable"  # acknowledged, but gave no readable telegram


@dataclass(frozen=True)
class Exchange:
    """One request on the wire and what came back. Times as the driver gave them."""

    request: bytes
    outcome: Outcome
    frames: tuple  # the valid frames received (one for a clean answer)
    sent_at: float
    request_end: float  # when the request's last character left, computed from the baud rate
    first_byte_at: object  # float, or None when nothing came
    done_at: float
    echo: bool = False  # the converter echoed the request
    stray: int = 0  # bytes from earlier exchanges dropped before sending
    detail: str = ""
    received: bytes = b""  # every byte of the answer as it came (after echo removal)

    @property
    def frame(self) -> bytes:
        return self.frames[0]


@dataclass(frozen=True)
class Probe:
    kind: ProbeKind
    frame: object = None
    requests: int = 0
    duration: float = 0.0


@dataclass(frozen=True)
class Telegrams:
    """The telegrams of one meter read through one addressing mode."""

    mode: object
    frames: tuple
    requests: int  # requests sent in total (selection, init, every REQ_UD2 and its retries)
    retries: int  # requests that repeated one already sent (or of a mode that failed)
    started: float
    finished: float
    durations: tuple  # per telegram, retries included
    complete: bool  # False when the telegram limit stopped a meter that had more to send


@dataclass(frozen=True)
class Target:
    """One way to reach a meter: ``selection`` (a secondary selection frame) or ``primary``."""

    mode: object
    key: object  # identifies the meter's link state under this mode
    label: str
    primary: object = None  # int for a primary read
    selection: object = None  # bytes for a secondary read
    primary_key: object = None  # the meter's primary link key, whatever the mode


@dataclass(frozen=True)
class Telegram:
    """Progress: ``count`` telegrams of the read in hand are in."""

    count: int


@dataclass(frozen=True)
class Done:
    value: object


@dataclass(frozen=True)
class Failed:
    kind: str  # NO_RESPONSE, COLLISION or NOISY
    label: str
    attempts: int
    detail: str = ""


@dataclass
class BusStats:
    exchanges: int = 0
    answers: int = 0
    silent: int = 0
    garbled: int = 0
    echoes: int = 0
    stray_bytes: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    noisy: int = 0  # jobs ended because the line did not go quiet


class _JobFailed(Exception):
    def __init__(self, failed):
        super().__init__(failed.detail)
        self.failed = failed


class _Noisy(Exception):
    """Thrown into a job: the line did not go quiet before the next attempt."""


cdef class EchoCanceller:
    """Drops the echo of the request that some converters send back before the answer. Bytes
    are held while they match the request; on a mismatch they were an answer after all and are
    given back."""

    cdef bytes _expected
    cdef Py_ssize_t _matched
    cdef bint _active
    cdef public bint seen

    def __init__(self, bytes request):
        self._expected = request
        self._matched = 0
        self._active = True
        self.seen = False

    def filter(self, data) -> bytes:
        data = bytes(data)
        if not self._active:
            return data
        cdef bytes expected = self._expected
        cdef Py_ssize_t i = 0, n = len(data), m = len(expected)
        while i < n and self._matched < m:
            if data[i] != expected[self._matched]:
                self._active = False
                return expected[: self._matched] + data[i:]
            i += 1
            self._matched += 1
        if self._matched == m:
            self._active = False
            self.seen = True
            return data[i:]
        return b""


def expected_kind(event, expect_ack) -> bool:
    """``expect_ack``: True for E5, False for RSP_UD, None for any valid frame."""
    if expect_ack is None:
        return not isinstance(event, Discarded)
    if expect_ack:
        return isinstance(event, SingleChar)
    return isinstance(event, LongFrame) and event.control & 0x0F == RSP_UD_FUNCTION


def raw_frame(event) -> bytes:
    if isinstance(event, SingleChar):
        return b"\xe5"
    if isinstance(event, ShortFrame):
        control, address = event.control, event.address
        return bytes((0x10, control, address, (control + address) & 0xFF, 0x16))
    return event.raw


cdef class Reception:
    """The answer to one request, as it comes in.

    ``window_end``: silence until then means "no answer". ``bound``: the reception ends then
    whatever comes (the longest frame that could start in the window is over). ``char``: one
    character's time; ``char_gap``: the silence that ends an answer. ``strict`` listens until
    the window has closed even after a clean answer.
    """

    cdef EchoCanceller _echo
    cdef object _parser
    cdef object _expect_ack
    cdef bytes _head
    cdef public double char, char_gap, window_end, bound, deadline, pace_until
    cdef public bint strict, done, garbled, overrun, capped
    cdef public list events
    cdef public bytearray data
    cdef public object first_at, last_at
    cdef public Py_ssize_t count, remaining

    def __init__(self, bytes request, double window_end, *, double char, double char_gap,
                 expect_ack, bint strict):
        self._echo = EchoCanceller(request)
        self._parser = FrameParser()
        self._expect_ack = expect_ack
        self._head = b""  # the first two bytes: a long frame's length is in the second
        self.char = char
        self.char_gap = char_gap
        self.strict = strict
        self.window_end = window_end
        self.bound = window_end + LONG_FRAME_MAX * char + char_gap
        self.deadline = window_end
        self.events = []
        self.data = bytearray()
        self.first_at = None
        self.last_at = None
        self.garbled = False
        self.overrun = False  # bytes still came when the bound was reached
        self.capped = False  # the bound cut the wait for the rest short
        self.count = 0  # bytes received (after echo removal)
        self.remaining = 0  # bytes still missing from the long frame being received
        self.pace_until = -math.inf  # when that long frame can be complete
        self.done = False

    @property
    def echo_seen(self) -> bool:
        return self._echo.seen

    @property
    def buffered(self) -> int:
        return self._parser.buffered

    def take(self, double at, data) -> bool:
        """One chunk from the line, received at ``at``. True while the rest of a long frame is
        still on the wire: ``remaining`` bytes, complete at ``pace_until``."""
        data = self._echo.filter(data)
        if not data:
            return False
        if at >= self.bound:
            self.overrun = True
        if self.first_at is None:
            self.first_at = at
        self.last_at = at
        parser = self._parser
        parser.feed(data)
        self.data += data
        self.count += len(data)
        if len(self._head) < 2:
            self._pace(at, data)
        elif self.remaining:
            self.remaining = max(0, self.remaining - len(data))
        new = parser.events()
        events = self.events
        events += new
        if len(events) > 1 or any(isinstance(e, Discarded) for e in new):
            self.garbled = True
        elif (
            not self.garbled
            and events
            and parser.buffered == 0
            and not self.strict
            and expected_kind(events[0], self._expect_ack)
        ):
            self.done = True
            return False
        # wait for the rest; once garbled (or listening strictly) also for late meters; never
        # beyond the bound
        cdef double deadline = max(at, self.pace_until) + self.char_gap
        if self.garbled or self.strict:
            deadline = max(deadline, self.window_end)
        self.capped = deadline > self.bound
        self.deadline = min(deadline, self.bound)
        return self.remaining > 0 and self.pace_until > at

    cdef _pace(self, double at, bytes data):
        """Once the length of a long frame is known: when it can be complete, and how many of
        its bytes are still on the wire."""
        self._head += data[: 2 - len(self._head)]
        if len(self._head) < 2 or self._head[0] != LONG_START:
            return
        self.remaining = max(0, self._head[1] + LONG_OVERHEAD - self.count)
        self.pace_until = at + self.remaining * self.char

    def expire(self, double now) -> bool:
        """The deadline has passed with the line silent. True: the reception is over; False:
        a truncated answer now waits for the window to close (a late meter may still come)."""
        if self._parser.buffered and not self.garbled:
            self.garbled = True
            if self.deadline < self.window_end and now < self.window_end:
                self.deadline = self.window_end
                return False
        self.events += self._parser.flush()
        if any(isinstance(e, Discarded) for e in self.events):
            self.garbled = True
        return True


class LinkStates:
    """What a master knows of its meters' link layer (the FCB and the telegram sequence), so
    that reading back to back can leave out the SND_NKE before each primary read. A meter is
    *known* after a complete read: the next REQ_UD2 with the other FCB asks it for a new
    telegram, the first of its sequence (a meter that sends its last telegram again instead is
    noticed, and from then on gets its SND_NKE). It is *fresh* after a broadcast SND_NKE until
    it is read. Anything else the master sends may reach any meter: then nothing is known."""

    def __init__(self) -> None:
        self.known = {}  # (PRIMARY, address) → telegrams of its last read
        self.no_restart = set()  # meters that need SND_NKE to start over
        self.broadcast_sent = False  # since the last time everything was forgotten
        self._fresh = False  # the broadcast was sent, and nobody answered it
        self._touched = set()  # read since the broadcast

    def is_fresh(self, key) -> bool:
        return self._fresh and key not in self._touched

    def reset_by_broadcast(self, clean: bool) -> None:
        self.known.clear()
        self._touched.clear()
        self.broadcast_sent = True
        self._fresh = clean

    def reading(self, key) -> None:
        """A request to the meter is about to go out: its state is unknown until it is read."""
        self.known.pop(key, None)
        self._touched.add(key)

    def read_completely(self, key, telegrams: int) -> None:
        if telegrams == 1 or key not in self.no_restart:
            self.known[key] = telegrams

    def forget_all(self) -> None:
        self.known.clear()
        self._touched.clear()
        self.broadcast_sent = False
        self._fresh = False


# what a job asks of the machine (yielded by the job's generator)
cdef int _OP_EXCHANGE = 1
cdef int _OP_SLEEP = 2
cdef int _OP_NOW = 3
cdef int _OP_LISTEN = 4

# the machine's phases
cdef int _IDLE = 0
cdef int _SLEEP = 1
cdef int _GAP = 2
cdef int _SETTLE = 3
cdef int _RECEIVE = 4
cdef int _LISTEN = 5


cdef class BusProtocol:
    """The exchange logic of one line. One job at a time; see the module's description.

    ``more_follows(frame) -> bool`` decides whether a meter has more telegrams to send (the
    decoder's "more records follow"); it is given, not built in, so that one decision serves
    every part of the gateway.
    """

    cdef object _more_follows
    cdef public object stats
    cdef public object links
    cdef dict _fcb
    cdef object _job
    cdef int _phase
    cdef list _events
    cdef bytes _output
    # the exchange in hand
    cdef bytes _request
    cdef object _times
    cdef object _expect_ack
    cdef bint _strict
    cdef Reception _reception
    cdef double _sent_at, _request_end, _wake, _settle_bound
    cdef Py_ssize_t _sent_stray
    # the line
    cdef public double quiet_at  # when the line's last activity ended
    cdef public double ready_at  # when the next request may go out (the gap after it)
    cdef double _stray_at
    cdef Py_ssize_t _stray
    cdef bint _garbled
    cdef bytearray _heard

    def __init__(self, more_follows):
        self._more_follows = more_follows
        self.stats = BusStats()
        self.links = LinkStates()
        self._fcb = {}  # link key → the FCB of the last REQ_UD2
        self._job = None
        self._phase = _IDLE
        self._events = []
        self._output = b""
        self._reception = None
        self.quiet_at = -math.inf
        self.ready_at = -math.inf
        self._stray_at = -math.inf
        self._stray = 0
        self._garbled = False
        self._heard = bytearray()

    # ---------------------------------------------------------------- what the driver sees

    @property
    def busy(self) -> bool:
        """A job is in hand."""
        return self._job is not None

    @property
    def receiving(self) -> bool:
        """An answer is being awaited (``pace_until``/``remaining`` describe a long frame)."""
        return self._phase == _RECEIVE

    @property
    def deadline(self) -> float:
        """When to ``tick`` next at the latest (inf: only received bytes matter)."""
        if self._phase == _RECEIVE:
            return self._reception.deadline
        if self._phase == _IDLE:
            return math.inf
        return self._wake

    @property
    def remaining(self) -> int:
        return self._reception.remaining if self._phase == _RECEIVE else 0

    @property
    def pace_until(self) -> float:
        return self._reception.pace_until if self._phase == _RECEIVE else -math.inf

    def take_output(self) -> bytes:
        """Bytes to write now (at most one request)."""
        out, self._output = self._output, b""
        return out

    def pop_events(self) -> list:
        events, self._events = self._events, []
        return events

    # ---------------------------------------------------------------- what the driver feeds

    def receive(self, data, double now) -> bool:
        """Bytes the line received at ``now``. True while the rest of a long frame is still on
        the wire (the driver may wait until ``pace_until`` before reading again)."""
        if not data:
            return False
        if self._phase == _LISTEN:
            self._heard += data
            self._stray_at = now
            self.quiet_at = max(self.quiet_at, now)
            self.ready_at = max(self.ready_at, now + self._times.gap)
            return False
        if self._phase != _RECEIVE:
            self._stray += len(data)
            self._stray_at = now
            if self._phase == _SETTLE:
                self._settle(now)
            return False
        reception = self._reception
        more = reception.take(now, data)
        if reception.done:
            self._end_exchange(now)
            return False
        if reception.overrun:
            self._end_exchange(now)  # the bound: the attempt is over, whatever still comes
            return False
        return more

    def tick(self, double now) -> None:
        """The time is ``now``: act on a deadline that has passed."""
        if self._phase == _IDLE:
            return
        if self._phase == _RECEIVE:
            reception = self._reception
            if now >= reception.deadline:
                if reception.deadline >= reception.bound or reception.expire(now):
                    self._end_exchange(now)
            return
        if now < self._wake:
            return
        if self._phase == _SLEEP:
            self._resume(now, None)
        elif self._phase == _LISTEN:
            heard, self._heard = bytes(self._heard), bytearray()
            self._resume(now, heard)
        elif self._phase == _GAP:
            self._after_gap(now)
        elif self._phase == _SETTLE:
            self._settle(now)

    def abort(self) -> None:
        """The line broke: drop the job in hand (the driver tells its caller)."""
        self._job = None
        self._phase = _IDLE
        self._reception = None
        self._output = b""
        self.links.forget_all()

    # ---------------------------------------------------------------- jobs

    def read(self, targets, times, follow, *, double now, bint init=True, int limit=1,
             bint keep_link=False) -> None:
        """Read a meter: each of ``targets`` (``Target``) in turn until one answers; up to
        ``limit`` telegrams; ``follow``: the timing from the second telegram on."""
        if not targets:
            raise ValueError("a read needs at least one target")
        self._start(_read(self, tuple(targets), times, follow, init, limit, keep_link), now,
                    forget=False)

    def ping(self, int address, times, *, double now) -> None:
        """SND_NKE to a primary address (or 0xFD, 0xFE); expects E5; Done(Exchange)."""
        self._start(_ping(self, address, times), now)

    def transfer(self, bytes frame, times, *, double now, expect_ack=None) -> None:
        """Any frame, one try; Done(Exchange) whatever came back."""
        self._start(_transfer(frame, times, expect_ack), now)

    def listen(self, double duration, times, *, double now) -> None:
        """Raw access: every byte the line receives for ``duration`` seconds; Done(bytes)."""
        self._start(_listen(duration, times), now)

    def application_reset(self, target, subcode, times, *, double now) -> None:
        self._start(_application_reset(self, target, subcode, times), now)

    def probe_primary(self, int address, times, *, double now) -> None:
        """Scan step: one meter at ``address``, several, or none; Done(Probe)."""
        self._start(_probe_primary(self, address, times), now)

    def probe_secondary(self, bytes selection, times, *, double now) -> None:
        """Scan step: select with a mask and see who answers; Done(Probe)."""
        self._start(_probe_secondary(self, selection, times), now)

    def _start(self, job, double now, bint forget=True) -> None:
        if self._job is not None:
            raise RuntimeError("the line has a job in hand")
        if forget:
            self.links.forget_all()  # anything but a read may reach any meter's link
        self._job = job
        self._resume(now, None)

    def _resume(self, double now, value, error=None) -> None:
        """Run the job until it needs the line or the time again."""
        job = self._job
        while job is not None:
            try:
                if error is not None:
                    op = job.throw(error)
                    error = None
                else:
                    op = job.send(value)
            except StopIteration as stop:
                self._finish(Done(stop.value))
                return
            except _JobFailed as failed:
                self._finish(failed.failed)
                return
            except BaseException:
                self.abort()  # a fault of the job itself: the caller sees it raised
                raise
            kind = op[0]
            if kind == _OP_SLEEP:
                until = now + op[1]
                if until > now:
                    self._phase = _SLEEP
                    self._wake = until
                    return
                value = None
                continue
            if kind == _OP_LISTEN:
                self._phase = _LISTEN
                self._times = op[2]
                self._wake = now + op[1]
                return
            if kind == _OP_EXCHANGE:
                self._request, self._times, self._expect_ack, self._strict = op[1:]
                self._phase = _GAP
                self._wake = self.quiet_at + self._times.gap
                if self._wake > now:
                    return
                self._after_gap(now)
                return
            value = now  # _OP_NOW

    def _finish(self, event) -> None:
        self._job = None
        self._phase = _IDLE
        self._reception = None
        self._events.append(event)

    # ---------------------------------------------------------------- one exchange

    cdef _after_gap(self, double now):
        if self._garbled:
            # after a garble: send only once the line has been silent for the recovery time,
            # and stop waiting for that after one longest frame more
            times = self._times
            self._settle_bound = now + times.recovery + LONG_FRAME_MAX * times.char + times.char_gap
            self._phase = _SETTLE
            self._settle(now)
            return
        self._send(now)

    cdef _settle(self, double now):
        cdef double until = max(self.quiet_at, self._stray_at) + self._times.recovery
        if until <= now:
            self._send(now)
            return
        if now >= self._settle_bound:
            self.stats.noisy += 1
            self._garbled = False  # the next job starts with its own bound
            recovery_ms = self._times.recovery * 1000
            self._phase = _IDLE
            self._resume(now, None, _Noisy(
                f"the line was not quiet for {recovery_ms:.0f} ms in "
                f"{(self._settle_bound - self.quiet_at) * 1000:.0f} ms"
            ))
            return
        self._wake = min(until, self._settle_bound)

    cdef _send(self, double now):
        times = self._times
        request = self._request
        self._sent_stray = self._stray
        self.stats.stray_bytes += self._stray
        self._stray = 0
        self._sent_at = now
        self._request_end = now + len(request) * times.char
        self._reception = Reception(
            request,
            self._request_end + times.no_answer,
            char=times.char,
            char_gap=times.char_gap,
            expect_ack=self._expect_ack,
            strict=self._strict,
        )
        self._output = request
        self._phase = _RECEIVE

    cdef _end_exchange(self, double now):
        reception = self._reception
        if not reception.done:
            reception.expire(math.inf)  # whatever is incomplete now is garbage
        got = reception.events
        frames = tuple(raw_frame(e) for e in got if not isinstance(e, Discarded))
        detail = ""
        if reception.first_at is None:
            result = Outcome.SILENT
        elif reception.overrun or reception.capped:
            result = Outcome.GARBLED
            detail = "the line did not go quiet"
        elif reception.garbled or len(got) != 1 or not expected_kind(got[0], self._expect_ack):
            result = Outcome.GARBLED
            detail = ", ".join(type(e).__name__ for e in got)
        else:
            result = Outcome.ANSWER
        last_at = reception.last_at
        self.quiet_at = self._request_end if last_at is None else max(self._request_end, last_at)
        self.ready_at = self.quiet_at + self._times.gap
        self._garbled = result is Outcome.GARBLED
        stats = self.stats
        stats.exchanges += 1
        stats.bytes_sent += len(self._request)
        stats.bytes_received += reception.count
        stats.echoes += reception.echo_seen
        if result is Outcome.SILENT:
            stats.silent += 1
        elif result is Outcome.GARBLED:
            stats.garbled += 1
        else:
            stats.answers += 1
        exchange = Exchange(
            self._request,
            result,
            frames,
            self._sent_at,
            self._request_end,
            reception.first_at,
            now,
            echo=reception.echo_seen,
            stray=self._sent_stray,
            detail=detail,
            received=bytes(reception.data),
        )
        self._events.append(exchange)
        self._reception = None
        self._phase = _IDLE
        self._resume(now, exchange)

    # ---------------------------------------------------------------- for the jobs

    def _fcb_of(self, key, bint reset) -> bool:
        return True if reset else not self._fcb.get(key, False)

    def _set_fcb(self, key, bint fcb) -> None:
        self._fcb[key] = fcb

    def _telegram(self, int count) -> None:
        self._events.append(Telegram(count))

    def _more(self, bytes frame) -> bool:
        return bool(self._more_follows(frame))


# ------------------------------------------------------------------ the jobs (generators)
# A job yields (_OP_EXCHANGE, request, times, expect_ack, strict) and gets the Exchange back,
# (_OP_SLEEP, seconds), or (_OP_NOW,) and gets the time; it returns its result or raises
# _JobFailed.


def _now():
    return (yield (_OP_NOW,))


def _attempts(bytes request, times, int attempts, str label, expect_ack):
    """Up to ``attempts`` tries; returns the answering exchange and the tries used."""
    garbled = 0
    last = None
    for attempt in range(1, attempts + 1):
        try:
            last = yield (_OP_EXCHANGE, request, times, expect_ack, False)
        except _Noisy as exc:
            raise _JobFailed(Failed(NOISY, label, attempt, str(exc)))
        if last.outcome is Outcome.ANSWER:
            return last, attempt
        if last.outcome is Outcome.GARBLED:
            garbled += 1
    if garbled:
        raise _JobFailed(Failed(COLLISION, label, attempts, last.detail if last else ""))
    raise _JobFailed(Failed(NO_RESPONSE, label, attempts))


def _strict(bytes request, times, expect_ack):
    """One try that listens until the window closes; a line that never went quiet counts as a
    collision (a scan narrows down, and the next step has its own bound)."""
    try:
        return (yield (_OP_EXCHANGE, request, times, expect_ack, True))
    except _Noisy:
        return None


def _listen(double duration, times):
    return (yield (_OP_LISTEN, duration, times))


def _ping(BusProtocol proto, int address, times):
    exchange, _ = yield from _attempts(
        snd_nke(address), times, times.read_attempts, str(address), True
    )
    return exchange


def _transfer(bytes frame, times, expect_ack):
    try:
        return (yield (_OP_EXCHANGE, frame, times, expect_ack, False))
    except _Noisy as exc:
        raise _JobFailed(Failed(NOISY, frame.hex(), 1, str(exc)))


def _address(BusProtocol proto, target, times, bint init):
    """Make the meter addressable: select it (secondary) or reset its link (primary, if
    ``init``). Returns the link address to use, the requests spent and the retries among
    them."""
    if target.selection is None:
        if not init:
            return target.primary, 0, 0
        _, used = yield from _attempts(
            snd_nke(target.primary), times, times.read_attempts, target.label, True
        )
        if times.after_init:
            yield (_OP_SLEEP, times.after_init)
        return target.primary, used, used - 1
    _, used = yield from _attempts(
        target.selection, times, times.select_attempts, target.label, True
    )
    return ADDRESS_SELECTED, used, used - 1


def _read(BusProtocol proto, tuple targets, times, follow, bint init, int limit,
          bint keep_link):
    last = None
    spent = 0  # requests of the modes that failed: retries of this read
    for target in targets:
        try:
            result = yield from _read_with(proto, target, times, follow, init, limit, keep_link)
        except _JobFailed as exc:
            last = exc.failed
        else:
            last = None
        if last is not None:
            if last.kind == NOISY:
                break  # another mode would not find the line any quieter
            spent += last.attempts
            continue
        if spent:
            result = Telegrams(
                result.mode, result.frames, result.requests, result.retries + spent,
                result.started, result.finished, result.durations, result.complete,
            )
        return result
    raise _JobFailed(last)


def _read_with(BusProtocol proto, target, times, follow, bint init, int limit, bint keep_link):
    started = yield from _now()
    primary = target.selection is None
    key = target.key
    links = proto.links
    requests = 0
    retries = 0
    expected = 0  # telegrams of the meter's last read, when its link state is known
    fresh = False
    if primary and keep_link:
        if key not in links.known and not links.broadcast_sent:
            requests += yield from _reset_line(proto, times)  # one SND_NKE for every meter
        expected, fresh = links.known.get(key, 0), links.is_fresh(key)
    links.reading(key)
    if target.primary_key is not None:
        links.reading(target.primary_key)
    first_init = init and not (expected or fresh)
    frames, durations, used, again, complete = yield from _read_telegrams(
        proto, target, times, follow, first_init, fresh, limit
    )
    requests += used
    retries += again
    if init and expected > 1 and len(frames) == 1 and complete:
        # it sent its last telegram again instead of starting over: only SND_NKE does that
        links.no_restart.add(key)
        frames, durations, used, again, complete = yield from _read_telegrams(
            proto, target, times, follow, True, False, limit
        )
        requests += used
        retries += again
    if primary and complete:
        links.read_completely(key, len(frames))
    finished = yield from _now()
    return Telegrams(
        target.mode, tuple(frames), requests, retries, started, finished, tuple(durations),
        complete,
    )


def _read_telegrams(BusProtocol proto, target, times, follow, bint init, bint fresh, int limit):
    """Address the meter (SND_NKE first if ``init``) and read its telegrams, up to the limit.
    Returns the telegrams, the time each took, the requests sent, the retries among them, and
    whether the meter had no more (False: the limit stopped it)."""
    link, requests, retries = yield from _address(proto, target, times, init)
    key = target.key
    reset = target.selection is not None or init or fresh  # it expects FCB 1 next
    fcb = proto._fcb_of(key, reset)
    frames = []
    durations = []
    for index in range(limit):
        step = times if index == 0 else follow
        begun = yield from _now()
        exchange, used = yield from _attempts(
            req_ud2(link, fcb), step, step.read_attempts, target.label, False
        )
        requests += used
        retries += used - 1
        proto._set_fcb(key, fcb)
        fcb = not fcb
        frames.append(exchange.frame)
        durations.append((yield from _now()) - begun)
        proto._telegram(len(frames))
        if not proto._more(exchange.frame):
            return frames, durations, requests, retries, True
    return frames, durations, requests, retries, False


def _reset_line(BusProtocol proto, times):
    """SND_NKE to every meter of the line at once (no meter answers a broadcast); returns the
    requests sent."""
    try:
        exchange = yield (_OP_EXCHANGE, snd_nke(ADDRESS_BROADCAST), times, None, False)
    except _Noisy as exc:
        raise _JobFailed(Failed(NOISY, "broadcast", 1, str(exc)))
    proto.links.reset_by_broadcast(exchange.outcome is Outcome.SILENT)
    if times.after_init:
        yield (_OP_SLEEP, times.after_init)
    return 1


def _application_reset(BusProtocol proto, target, subcode, times):
    link, _, _ = yield from _address(proto, target, times, False)
    exchange, _ = yield from _attempts(
        application_reset(link, subcode), times, times.read_attempts, target.label, True
    )
    return exchange


def _identify(int link, times, int requests, double begun):
    """After an E5: read the telegram strictly; garbage means several meters answered."""
    for _ in range(times.read_attempts):
        exchange = yield from _strict(req_ud2(link, True), times, False)
        requests += 1
        now = yield from _now()
        if exchange is None:
            return Probe(ProbeKind.COLLISION, None, requests, now - begun)
        if exchange.outcome is Outcome.ANSWER:
            return Probe(ProbeKind.FOUND, exchange.frame, requests, now - begun)
        if exchange.outcome is Outcome.GARBLED:
            return Probe(ProbeKind.COLLISION, None, requests, now - begun)
    now = yield from _now()
    return Probe(ProbeKind.UNREADABLE, None, requests, now - begun)


def _probe_primary(BusProtocol proto, int address, times):
    begun = yield from _now()
    requests = 0
    for _ in range(times.select_attempts):
        exchange = yield from _strict(snd_nke(address), times, True)
        requests += 1
        if exchange is None:
            break
        if exchange.outcome is Outcome.SILENT:
            now = yield from _now()
            return Probe(ProbeKind.EMPTY, None, requests, now - begun)
        if exchange.outcome is Outcome.ANSWER:
            return (yield from _identify(address, times, requests, begun))
    now = yield from _now()
    return Probe(ProbeKind.COLLISION, None, requests, now - begun)


def _probe_secondary(BusProtocol proto, bytes selection, times):
    begun = yield from _now()
    # One try only: silence is a definitive "nobody", garbage the signal to narrow down.
    # Listen until the window closes: a slower meter's E5 may still come, and a meter still
    # waiting to send its E5 would not hear the REQ_UD2 that follows.
    exchange = yield from _strict(selection, times, True)
    now = yield from _now()
    if exchange is None or exchange.outcome is Outcome.GARBLED:
        return Probe(ProbeKind.COLLISION, None, 1, now - begun)
    if exchange.outcome is Outcome.SILENT:
        return Probe(ProbeKind.EMPTY, None, 1, now - begun)
    # A clean E5 can still be several identical E5s on top of each other: the telegrams that
    # follow cannot be identical, so the read decides.
    return (yield from _identify(ADDRESS_SELECTED, times, 1, begun))
