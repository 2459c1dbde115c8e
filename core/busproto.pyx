# cython: language_level=3
"""The wired M-Bus exchange as a sans-I/O state machine: one ``BusProtocol`` per line.

It holds everything a master decides on a line, and nothing it does: a driver (the trio task
of ``gateway.bus``, or a native loop of its own) starts a job (``read``, ``ping``, ``probe_*``,
``application_reset``, ``transfer``), feeds it what the line received (``receive``) and the
time (``tick``), writes what ``take_output`` gives at once, wakes at ``deadline``, and collects
``pop_events``: every ``Exchange`` as it ends, ``Telegram`` progress (each made only while
``report_exchanges``/``report_progress`` ask for it), and the job's end as ``Done`` or
``Failed``. The machine never reads a clock: every time comes in as an argument. The read is
a compiled state machine (``_Read``), so an exchange of a read runs no Python code; the other
jobs are generators.
A compiled driver may instead run the hot phases on the machine's C level (``busproto.pxd``:
``fast_phase``, ``fast_send``, ``fast_receive``, then ``received`` with the GIL): the same
state, the same decisions, without a Python object per chunk or per deadline.

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

cimport cython
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy
from dataclasses import dataclass

from mbusgw.core.frame cimport frame_at

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
cdef enum:
    _SHORT_START = 0x10
    _SHORT_LENGTH = 5
    _LONG_START = 0x68
    _LONG_OVERHEAD = 6  # 68 L L 68 ... CS 16 around the L bytes of a long frame
    _LONG_FRAME_MAX = 255 + _LONG_OVERHEAD  # the longest frame a meter can send
    _RSP_UD_FUNCTION = 0x08  # C field of a slave's user data, without the ACD/DFC bits
LONG_START = _LONG_START
LONG_OVERHEAD = _LONG_OVERHEAD
LONG_FRAME_MAX = _LONG_FRAME_MAX
RSP_UD_FUNCTION = _RSP_UD_FUNCTION

cdef double INF = math.inf

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


# what every read ends with: compiled, as a line's thread makes it right after waking for the
# answer, when each interpreted step costs many times what it costs warm
@cython.dataclasses.dataclass(frozen=True)
cdef class Telegrams:
    """The telegrams of one meter read through one addressing mode."""

    mode: object
    frames: tuple
    requests: object  # int: requests sent in total (selection, init, every REQ_UD2, retries)
    retries: object  # int: requests that repeated one already sent (or of a mode that failed)
    started: cython.double
    finished: cython.double
    durations: tuple  # per telegram, retries included
    complete: cython.bint  # False when the telegram limit stopped a meter that had more to send


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


@cython.dataclasses.dataclass(frozen=True)
cdef class Done:
    value: object


@cython.dataclasses.dataclass(frozen=True)
cdef class Failed:
    kind: str  # NO_RESPONSE, COLLISION or NOISY
    label: str
    attempts: object  # int
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


cdef enum:
    _ECHO_HELD = 0  # every byte so far matches the request: held
    _ECHO_MISMATCH = 1  # not an echo: what was held is the answer's start
    _ECHO_DONE = 2  # the whole request came back


cdef int _echo_match(const unsigned char *expected, Py_ssize_t m, Py_ssize_t *matched,
                     const unsigned char *data, Py_ssize_t n, Py_ssize_t *i) noexcept nogil:
    """Match ``data`` from ``i`` against the rest of ``expected``; ``i`` and ``matched``
    advance over the bytes that match."""
    while i[0] < n and matched[0] < m and data[i[0]] == expected[matched[0]]:
        i[0] += 1
        matched[0] += 1
    if matched[0] == m:
        return _ECHO_DONE
    if i[0] < n:
        return _ECHO_MISMATCH
    return _ECHO_HELD


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
        cdef Py_ssize_t i = 0
        cdef int found = _echo_match(
            <const unsigned char *><const char *>expected, len(expected), &self._matched,
            <const unsigned char *><const char *>data, len(data), &i
        )
        if found == _ECHO_HELD:
            return b""
        self._active = False
        if found == _ECHO_DONE:
            self.seen = True
            return data[i:]
        return expected[: self._matched] + data[i:]


cpdef bint expected_kind(event, expect_ack):
    """``expect_ack``: True for E5, False for RSP_UD, None for any valid frame."""
    if expect_ack is None:
        return not isinstance(event, Discarded)
    if expect_ack:
        return isinstance(event, SingleChar)
    return isinstance(event, LongFrame) and event.control & 0x0F == RSP_UD_FUNCTION


cpdef bytes raw_frame(event):
    if isinstance(event, SingleChar):
        return b"\xe5"
    if isinstance(event, ShortFrame):
        control, address = event.control, event.address
        return bytes((0x10, control, address, (control + address) & 0xFF, 0x16))
    return event.raw


cdef bint _any_discarded(list events):
    for event in events:
        if isinstance(event, Discarded):
            return True
    return False


cdef int _rx_append(Rx *rx, const unsigned char *data, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t capacity
    cdef unsigned char *grown
    if rx.count + n > rx.capacity:
        capacity = max(2 * rx.capacity, rx.count + n, _LONG_FRAME_MAX + 1)
        grown = <unsigned char *>realloc(rx.buf, capacity)
        if grown == NULL:
            return -1
        rx.buf = grown
        rx.capacity = capacity
    memcpy(rx.buf + rx.count, data, n)
    rx.count += n
    return 0


cdef bint _rx_quiet(const Rx *rx) noexcept nogil:
    """The bytes so far are the incomplete start of one frame: the frame parser would report
    nothing yet (see ``frame._check_at``), so it need not see them before the frame is in."""
    cdef const unsigned char *b = rx.buf
    cdef Py_ssize_t n = rx.count
    if b[0] == _SHORT_START:
        return n < _SHORT_LENGTH
    if b[0] != _LONG_START:
        return False
    if n < 4:
        return True
    return b[1] == b[2] and b[3] == _LONG_START and b[1] >= 3 and n < b[1] + _LONG_OVERHEAD


cdef bint _rx_deadline(Rx *rx, double at) noexcept nogil:
    """Wait for the rest; once garbled (or listening strictly) also for late meters; never
    beyond the bound. True while the rest of a long frame is still on the wire."""
    cdef double deadline = max(at, rx.pace_until) + rx.char_gap
    if rx.garbled or rx.strict:
        deadline = max(deadline, rx.window_end)
    rx.capped = deadline > rx.bound
    rx.deadline = min(deadline, rx.bound)
    return rx.remaining > 0 and rx.pace_until > at


cdef void _rx_start(Rx *rx, double window_end) noexcept nogil:
    rx.window_end = window_end
    rx.bound = window_end + _LONG_FRAME_MAX * rx.char_time + rx.char_gap
    rx.deadline = window_end


cdef int rx_take(Rx *rx, double at, const unsigned char *data, Py_ssize_t n) noexcept nogil:
    """One chunk from the line, received at ``at``, on C data: echo removal, the bytes kept,
    the long frame's pace, and the deadline while the bytes are the incomplete start of one
    frame. ``RX_PARSE``: anything else, which the frame parser (``Reception.taken``) decides."""
    cdef Py_ssize_t i = 0, before = rx.count, added
    cdef int found
    if rx.echo_active:
        found = _echo_match(rx.expected, rx.expected_len, &rx.matched, data, n, &i)
        if found == _ECHO_HELD:
            return RX_NOTHING
        rx.echo_active = False
        if found == _ECHO_DONE:
            rx.echo_seen = True
        elif _rx_append(rx, rx.expected, rx.matched) < 0:
            return RX_NOMEM
    if _rx_append(rx, data + i, n - i) < 0:
        return RX_NOMEM
    added = rx.count - before
    if added == 0:
        return RX_NOTHING
    if at >= rx.bound:
        rx.overrun = True
    if not rx.started:
        rx.started = True
        rx.first_at = at
    rx.last_at = at
    if before < 2:
        # once the length of a long frame is known: when it can be complete, and how many of
        # its bytes are still on the wire
        if rx.count >= 2 and rx.buf[0] == _LONG_START:
            rx.remaining = max(0, rx.buf[1] + _LONG_OVERHEAD - rx.count)
            rx.pace_until = at + rx.remaining * rx.char_time
    elif rx.remaining:
        rx.remaining = max(0, rx.remaining - added)
    if rx.overrun or rx.parsed or not _rx_quiet(rx):
        if not (rx.overrun or rx.parsed or rx.strict) and _rx_answer(rx):
            # one valid frame of the kind expected, nothing more: what the frame parser would
            # decide, without it (the usual answer costs no Python object)
            rx.done = True
            return RX_TAKEN | RX_DONE
        return RX_TAKEN | RX_PARSE
    return RX_TAKEN | (RX_MORE if _rx_deadline(rx, at) else 0)


cdef bint _rx_answer(const Rx *rx) noexcept nogil:
    """The bytes are exactly one valid frame of the expected kind (``expected_kind``)."""
    if frame_at(rx.buf, rx.count) != rx.count:
        return False
    if rx.expect == EXPECT_ANY:
        return True
    if rx.expect == EXPECT_ACK:
        return rx.count == 1
    return rx.buf[0] == _LONG_START and rx.buf[4] & 0x0F == _RSP_UD_FUNCTION


cdef class Reception:
    """The answer to one request, as it comes in.

    ``window_end``: silence until then means "no answer". ``bound``: the reception ends then
    whatever comes (the longest frame that could start in the window is over). ``char``: one
    character's time; ``char_gap``: the silence that ends an answer. ``strict`` listens until
    the window has closed even after a clean answer. The times are set by ``start`` when the
    request goes out.
    """

    def __cinit__(self):
        self.rx.buf = NULL
        self.rx.capacity = 0

    def __init__(self, bytes request, *, double char, double char_gap, expect_ack,
                 bint strict):
        self.reset(request, char, char_gap, expect_ack, strict)

    cdef void reset(self, bytes request, double char, double char_gap, expect_ack, bint strict):
        """Ready for the answer to ``request`` (a protocol keeps one reception for its line,
        and its buffer)."""
        self._request = request
        self._parser = None
        self._expect_ack = expect_ack
        self._events = []
        rx = &self.rx
        rx.expected = <const unsigned char *><const char *>request
        rx.expected_len = len(request)
        rx.matched = 0
        rx.echo_active = True
        rx.echo_seen = False
        rx.count = 0
        rx.parsed = 0
        rx.remaining = 0
        rx.char_time = char
        rx.char_gap = char_gap
        rx.pace_until = -INF  # when the long frame being received can be complete
        rx.first_at = rx.last_at = -INF
        rx.strict = strict
        rx.expect = EXPECT_ANY if expect_ack is None else (EXPECT_ACK if expect_ack else
                                                             EXPECT_RSP_UD)
        rx.started = rx.done = rx.garbled = False
        rx.overrun = False  # bytes still came when the bound was reached
        rx.capped = False  # the bound cut the wait for the rest short
        _rx_start(rx, INF)

    def __dealloc__(self):
        free(self.rx.buf)

    def start(self, double window_end) -> None:
        """The request is out: silence until ``window_end`` means no answer."""
        _rx_start(&self.rx, window_end)

    @property
    def echo_seen(self) -> bool:
        return self.rx.echo_seen

    @property
    def buffered(self) -> int:
        if self._parser is None:
            return 0 if self.rx.done else self.rx.count
        return self._parser.buffered + self.rx.count - self.rx.parsed

    @property
    def events(self) -> list:
        """The frame parser's events of the bytes so far (a clean answer is parsed when
        asked: the protocol itself does not need its event)."""
        if self.rx.done and self.rx.parsed < self.rx.count:
            self._feed_parser()
            self._events += self._parser.events()
        return self._events

    @property
    def data(self) -> bytes:
        """Every byte received, after echo removal."""
        return (<char *>self.rx.buf)[: self.rx.count] if self.rx.count else b""

    @property
    def first_at(self):
        return self.rx.first_at if self.rx.started else None

    @property
    def remaining(self) -> int:
        return self.rx.remaining

    @property
    def pace_until(self) -> float:
        return self.rx.pace_until

    @property
    def deadline(self) -> float:
        return self.rx.deadline

    @property
    def done(self) -> bool:
        return self.rx.done

    @property
    def garbled(self) -> bool:
        return self.rx.garbled

    def take(self, double at, data) -> bool:
        """One chunk from the line, received at ``at``. True while the rest of a long frame is
        still on the wire: ``remaining`` bytes, complete at ``pace_until``."""
        cdef bytes chunk = bytes(data)
        return self.taken(
            rx_take(&self.rx, at, <const unsigned char *><const char *>chunk, len(chunk)), at
        )

    cdef bint taken(self, int flags, double at) except -1:
        """What ``rx_take`` left to the Python level: the frame parser's verdict."""
        if flags & RX_NOMEM:
            raise MemoryError("no memory for the answer's bytes")
        if not flags & RX_PARSE:
            return flags & RX_MORE != 0
        rx = &self.rx
        self._feed_parser()
        parser = self._parser
        new = parser.events()
        events = self._events
        events += new
        if len(events) > 1 or _any_discarded(new):
            rx.garbled = True
        elif (
            not rx.garbled
            and events
            and parser.buffered == 0
            and not rx.strict
            and expected_kind(events[0], self._expect_ack)
        ):
            rx.done = True
            return False
        return _rx_deadline(rx, at)

    cdef void _feed_parser(self):
        """The bytes the parser has not seen yet."""
        rx = &self.rx
        if self._parser is None:
            self._parser = FrameParser()
        if rx.parsed < rx.count:
            self._parser.feed((<char *>rx.buf)[rx.parsed : rx.count])
            rx.parsed = rx.count

    def expire(self, double now) -> bool:
        """The deadline has passed with the line silent. True: the reception is over; False:
        a truncated answer now waits for the window to close (a late meter may still come)."""
        rx = &self.rx
        self._feed_parser()
        self._events += self._parser.events()  # nothing: the bytes held were a frame's start
        if self._parser.buffered and not rx.garbled:
            rx.garbled = True
            if rx.deadline < rx.window_end and now < rx.window_end:
                rx.deadline = rx.window_end
                return False
        self._events += self._parser.flush()
        if _any_discarded(self._events):
            rx.garbled = True
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


# ------------------------------------------------------------------ the retry rule, and the read

# an exchange's outcome, as C code (``_OUTCOMES`` gives the ``Outcome``)
cdef enum:
    _ANSWER = 0
    _SILENT = 1
    _GARBLED = 2

_OUTCOMES = (Outcome.ANSWER, Outcome.SILENT, Outcome.GARBLED)

# the verdict on one try (``_Attempts.after``)
cdef enum:
    _TRY_ANSWERED = 0
    _TRY_AGAIN = 1
    _TRY_FAILED = 2


cdef class _Attempts:
    """Up to ``attempts`` tries of one request: the retry rule of every job that retries
    (collision when any try was garbled, else no response; the try the line was too noisy
    for fails the job at once)."""

    cdef readonly bytes request
    cdef readonly object times
    cdef readonly object expect_ack
    cdef readonly int used  # tries that ended
    cdef readonly object failed  # why the tries failed, once they have
    cdef int _attempts, _garbled
    cdef str _label

    def __init__(self, bytes request, times, int attempts, str label, expect_ack):
        self.request = request
        self.times = times
        self.expect_ack = expect_ack
        self.used = 0
        self.failed = None
        self._attempts = attempts
        self._garbled = 0
        self._label = label

    cdef int after(self, int outcome, str detail) except -1:
        """The verdict on the try that ended with ``outcome`` (``detail``: what garbled it)."""
        self.used += 1
        if outcome == _ANSWER:
            return _TRY_ANSWERED
        if outcome == _GARBLED:
            self._garbled += 1
        if self.used < self._attempts:
            return _TRY_AGAIN
        if self._garbled:
            self.failed = Failed(COLLISION, self._label, self._attempts, detail)
        else:
            self.failed = Failed(NO_RESPONSE, self._label, self._attempts)
        return _TRY_FAILED

    cdef object noisy(self, str message):
        """The line did not go quiet before the next try."""
        self.failed = Failed(NOISY, self._label, self.used + 1, message)
        return self.failed


cdef _Attempts _addressing(target, times, bint init):
    """The tries that make ``target`` addressable: its secondary selection, or SND_NKE to its
    primary address if ``init`` (None: nothing to send)."""
    if target.selection is None:
        if not init:
            return None
        return _Attempts(snd_nke(target.primary), times, times.read_attempts, target.label, True)
    return _Attempts(target.selection, times, times.select_attempts, target.label, True)


cdef object _link(target):
    """The address of ``target``'s requests once it is addressable."""
    return target.primary if target.selection is None else ADDRESS_SELECTED


# what the read job asks of the machine next (``_Read.op``)
cdef enum:
    _NEXT_EXCHANGE = 1  # ``tries``' request
    _NEXT_SLEEP = 2  # ``pause`` seconds, then ``woke``
    _NEXT_END = 3  # ``ended``: Done or Failed

# the read's step in hand
cdef enum:
    _STEP_BROADCAST = 1
    _STEP_AFTER_BROADCAST = 2  # the pause after it
    _STEP_ADDRESS = 3
    _STEP_AFTER_INIT = 4  # the pause after a SND_NKE
    _STEP_TELEGRAM = 5


cdef class _Read:
    """The read job (``BusProtocol.read``) as a state machine on C data: the machine tells it
    how each exchange ended (``exchanged``), that a pause is over (``woke``) or that the line
    was too noisy for the next try (``noisy``), and reads what it asks next from ``op``. A
    line's driver thus runs no Python code per exchange of a read.

    A read tries the meter's targets (addressing modes) in turn until one answers; a target's
    read is a pass over its telegrams (the meter addressed first), and a second pass from
    SND_NKE when a meter read back to back sent its last telegram again instead of its first.
    """

    cdef BusProtocol proto
    cdef tuple targets
    cdef object times, follow, links
    cdef bint init, keep_link
    cdef int limit
    cdef int op, step
    cdef _Attempts tries
    cdef double pause
    cdef object ended
    # across the targets
    cdef Py_ssize_t index
    cdef int spent  # requests of the targets that failed: retries of this read
    # the target in hand
    cdef object target, key
    cdef bint primary, restarted
    cdef double started
    cdef int requests, retries, expected
    cdef bint fresh
    # the pass in hand
    cdef bint reset  # the meter expects FCB 1 next
    cdef object link
    cdef bint fcb
    cdef list frames, durations
    cdef double begun

    def __init__(self, BusProtocol proto, tuple targets, times, follow, bint init, int limit,
                 bint keep_link):
        self.proto = proto
        self.targets = targets
        self.times = times
        self.follow = follow
        self.links = proto.links
        self.init = init
        self.limit = limit
        self.keep_link = keep_link
        self.index = -1
        self.spent = 0

    cdef int begin(self, double now) except -1:
        self._next_target(now, None)
        return 0

    cdef int exchanged(self, double now, int outcome, bytes frame, str detail) except -1:
        """The exchange of ``tries`` ended at ``now`` (``frame``: the answer)."""
        cdef int verdict
        if self.step == _STEP_BROADCAST:  # nobody answers it; a clean line remembers it
            self.links.reset_by_broadcast(outcome == _SILENT)
            self._pause(_STEP_AFTER_BROADCAST)
            return 0
        verdict = self.tries.after(outcome, detail)
        if verdict == _TRY_AGAIN:
            self.op = _NEXT_EXCHANGE
            return 0
        if verdict == _TRY_FAILED:
            self._target_failed(now, self.tries.failed)
            return 0
        self.requests += self.tries.used
        self.retries += self.tries.used - 1
        if self.step == _STEP_ADDRESS:
            if self.primary:
                self._pause(_STEP_AFTER_INIT)
            else:
                self._telegrams(now)
            return 0
        self._telegram(now, frame)
        return 0

    cdef int woke(self, double now) except -1:
        if self.step == _STEP_AFTER_BROADCAST:
            self._links_known(now)
        else:
            self._telegrams(now)
        return 0

    cdef int noisy(self, double now, str message) except -1:
        self._target_failed(now, self.tries.noisy(message))
        return 0

    cdef void _exchange(self, _Attempts tries):
        self.tries = tries
        self.op = _NEXT_EXCHANGE

    cdef void _pause(self, int step):
        self.step = step
        self.pause = self.times.after_init
        self.op = _NEXT_SLEEP

    cdef void _end(self, ended):
        self.ended = ended
        self.op = _NEXT_END

    cdef int _next_target(self, double now, last) except -1:
        self.index += 1
        if self.index == len(self.targets):
            self._end(last)
            return 0
        target = self.target = self.targets[self.index]
        self.key = target.key
        self.primary = target.selection is None
        self.started = now
        self.requests = self.retries = self.expected = 0
        self.fresh = self.restarted = False
        links = self.links
        if (self.primary and self.keep_link and self.key not in links.known
                and not links.broadcast_sent):
            # one SND_NKE for every meter of the line, once
            self.requests += 1
            self.step = _STEP_BROADCAST
            self._exchange(_Attempts(snd_nke(ADDRESS_BROADCAST), self.times, 1, "broadcast",
                                     None))
            return 0
        return self._links_known(now)

    cdef int _links_known(self, double now) except -1:
        links = self.links
        if self.primary and self.keep_link:
            self.expected = links.known.get(self.key, 0)
            self.fresh = links.is_fresh(self.key)
        links.reading(self.key)
        if self.target.primary_key is not None:
            links.reading(self.target.primary_key)
        return self._pass(now, self.init and not (self.expected or self.fresh), self.fresh)

    cdef int _pass(self, double now, bint init, bint fresh) except -1:
        """Address the meter (SND_NKE first if ``init``) and read its telegrams."""
        self.frames = []
        self.durations = []
        self.reset = not self.primary or init or fresh
        self.link = _link(self.target)
        tries = _addressing(self.target, self.times, init)
        if tries is None:
            return self._telegrams(now)
        self.step = _STEP_ADDRESS
        self._exchange(tries)
        return 0

    cdef int _telegrams(self, double now) except -1:
        self.fcb = self.proto._fcb_of(self.key, self.reset)
        return self._ask_telegram(now)

    cdef int _ask_telegram(self, double now) except -1:
        step = self.follow if self.frames else self.times
        self.begun = now
        self.step = _STEP_TELEGRAM
        self._exchange(_Attempts(req_ud2(self.link, self.fcb), step, step.read_attempts,
                                 self.target.label, False))
        return 0

    cdef int _telegram(self, double now, bytes frame) except -1:
        proto = self.proto
        proto._set_fcb(self.key, self.fcb)
        self.fcb = not self.fcb
        self.frames.append(frame)
        self.durations.append(now - self.begun)
        proto._telegram(len(self.frames))
        if not proto._more(frame):
            return self._pass_done(now, True)
        if len(self.frames) < self.limit:
            return self._ask_telegram(now)
        return self._pass_done(now, False)

    cdef int _pass_done(self, double now, bint complete) except -1:
        """``complete``: the meter had no more (False: the limit stopped it)."""
        if (self.init and not self.restarted and self.expected > 1 and len(self.frames) == 1
                and complete):
            # it sent its last telegram again instead of starting over: only SND_NKE does that
            self.links.no_restart.add(self.key)
            self.restarted = True
            return self._pass(now, True, False)
        if self.primary and complete:
            self.links.read_completely(self.key, len(self.frames))
        self._end(Done(Telegrams(
            self.target.mode, tuple(self.frames), self.requests, self.retries + self.spent,
            self.started, now, tuple(self.durations), complete,
        )))
        return 0

    cdef int _target_failed(self, double now, failed) except -1:
        if failed.kind == NOISY:
            self._end(failed)  # another mode would not find the line any quieter
            return 0
        self.spent += failed.attempts
        return self._next_target(now, failed)


# what a job asks of the machine (yielded by the job's generator)
cdef int _OP_EXCHANGE = 1
cdef int _OP_LISTEN = 2

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

    def __init__(self, more_follows):
        self._more_follows = more_follows
        self.stats = BusStats()
        self.links = LinkStates()
        self._fcb = {}  # link key → the FCB of the last REQ_UD2
        self._job = None
        self._read = None
        self._phase = _IDLE
        self._events = []
        self._output = b""
        self._out_pending = False
        self._reception = None
        self._spare = Reception.__new__(Reception)
        # a driver that passes no ``Exchange`` or ``Telegram`` on asks for none to be made
        self.report_exchanges = True
        self.report_progress = True
        self._rx = NULL
        self._resolved = None
        self._unbooked_stray = 0
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
            return self._rx.deadline
        if self._phase == _IDLE:
            return math.inf
        return self._wake

    @property
    def remaining(self) -> int:
        return self.fast_remaining()

    @property
    def pace_until(self) -> float:
        return self.fast_pace_until()

    def take_output(self) -> bytes:
        """Bytes to write now (at most one request)."""
        return self.fast_output()

    def pop_events(self) -> list:
        return self.fast_events() or []

    cdef bytes fast_output(self):
        if self._out_pending:
            self._out_pending = False
            return self._request
        out, self._output = self._output, b""
        return out

    cdef list fast_events(self):
        """The events made since the last call; None if there are none (most steps make
        none: a compiled driver checks without a list made each time)."""
        if not self._events:
            return None
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
        cdef bytes chunk = bytes(data)
        cdef int phase = self._phase
        cdef int flags = self.fast_receive(
            <const unsigned char *><const char *>chunk, len(chunk), now
        )
        if phase == _RECEIVE:
            return self.received(flags, now)
        if phase == _SETTLE:
            self._settle(now)  # stray bytes: the line is not quiet yet
        return False

    cdef bint received(self, int flags, double at) except -1:
        """The Python level of a chunk ``rx_take`` took at ``at``."""
        more = self._reception.taken(flags, at)
        if self._rx.done or self._rx.overrun:
            # a complete answer; or the bound: the attempt is over, whatever still comes
            self._end_exchange(at)
            return False
        return more

    # ---------------------------------------------------------------- for a compiled driver

    cdef int fast_phase(self) noexcept nogil:
        """What may go on without the GIL: the gap before a request the job has decided (not
        after a garble: the recovery waits for a quiet line), or receiving while the bytes
        so far are the start of one frame."""
        if self._out_pending:
            return FAST_NONE
        if self._phase == _GAP and not self._garbled:
            return FAST_GAP
        if self._phase == _RECEIVE and self._rx.parsed == 0:
            return FAST_RECEIVE
        return FAST_NONE

    cdef double fast_wake(self) noexcept nogil:
        """``deadline`` without the GIL."""
        return self._rx.deadline if self._phase == _RECEIVE else self._wake

    cdef const unsigned char *fast_send(self, double now, Py_ssize_t *length) noexcept nogil:
        """The gap is over at ``now``: the request goes out; its bytes, for the driver to
        write at once."""
        self._send(now)
        self._out_pending = False
        length[0] = self._rx.expected_len
        return self._rx.expected

    cdef int fast_receive(self, const unsigned char *data, Py_ssize_t n, double now) noexcept nogil:
        """``receive`` without the GIL (but for raw access's listening). Between exchanges the
        bytes are stray: counted, and they delay a retry after a garble. ``RX_PARSE`` (or
        ``RX_NOMEM``): the driver passes the flags to ``received`` with the GIL."""
        if self._phase != _RECEIVE:
            self._stray += n
            self._stray_at = now
            return RX_NOTHING
        return rx_take(self._rx, now, data, n)

    cdef Py_ssize_t fast_remaining(self) noexcept nogil:
        return self._rx.remaining if self._phase == _RECEIVE else 0

    cdef double fast_pace_until(self) noexcept nogil:
        return self._rx.pace_until if self._phase == _RECEIVE else -INF

    def tick(self, double now) -> None:
        """The time is ``now``: act on a deadline that has passed."""
        if self._phase == _IDLE:
            return
        if self._phase == _RECEIVE:
            rx = self._rx
            if now >= rx.deadline:
                if rx.deadline >= rx.bound or self._reception.expire(now):
                    self._end_exchange(now)
            return
        if now < self._wake:
            return
        if self._phase == _SLEEP:  # only a read pauses
            (<_Read>self._read).woke(now)
            self._advance(now)
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
        self._read = None
        self._phase = _IDLE
        self._reception = None
        self._rx = NULL
        self._output = b""
        self._out_pending = False
        self._book_stray()
        self.links.forget_all()

    # ---------------------------------------------------------------- jobs

    def read(self, targets, times, follow, *, double now, bint init=True, int limit=1,
             bint keep_link=False) -> None:
        """Read a meter: each of ``targets`` (``Target``) in turn until one answers; up to
        ``limit`` telegrams; ``follow``: the timing from the second telegram on."""
        if not targets:
            raise ValueError("a read needs at least one target")
        job = _Read(self, tuple(targets), times, follow, init, limit, keep_link)
        self._start(job, now, forget=False)

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
        if type(job) is _Read:
            self._read = job
            try:
                (<_Read>self._read).begin(now)
                self._advance(now)
            except BaseException:
                self.abort()  # a fault of the job itself: the caller sees it raised
                raise
        else:
            self._resume(now, None)

    cdef _advance(self, double now):
        """Do what the read job asks next."""
        cdef _Read job = <_Read>self._read
        cdef _Attempts tries
        self._at = now
        while True:
            if job.op == _NEXT_END:
                self._finish(job.ended)
                return
            if job.op == _NEXT_EXCHANGE:
                tries = job.tries
                self._exchange(tries.request, tries.times, tries.expect_ack, False, now)
                return
            if now + job.pause > now:
                self._phase = _SLEEP
                self._wake = now + job.pause
                return
            job.woke(now)

    def _resume(self, double now, value, error=None) -> None:
        """Run the job's generator until it needs the line or the time again."""
        job = self._job
        self._at = now
        try:
            op = job.throw(error) if error is not None else job.send(value)
        except StopIteration as stop:
            self._finish(Done(stop.value))
            return
        except _JobFailed as failed:
            self._finish(failed.failed)
            return
        except BaseException:
            self.abort()  # a fault of the job itself: the caller sees it raised
            raise
        if op[0] == _OP_LISTEN:
            self._phase = _LISTEN
            self._times = op[2]
            self._wake = now + op[1]
        elif op[0] == _OP_EXCHANGE:
            self._exchange(op[1], op[2], op[3], op[4], now)
        else:
            raise RuntimeError(f"not a step of a job: {op!r}")

    cdef _exchange(self, bytes request, times, expect_ack, bint strict, double now):
        """Send ``request`` after the gap and receive its answer."""
        self._request = request
        self._times = times
        self._expect_ack = expect_ack
        self._strict = strict
        if times is not self._resolved:  # a job's times are the same object each time
            self._resolved = times
            self._char = times.char
            self._char_gap = times.char_gap
            self._no_answer = times.no_answer
            self._gap = times.gap
        # ready before the gap, so that the gap and the send need no Python object
        self._reception = self._spare
        self._reception.reset(request, self._char, self._char_gap, expect_ack, strict)
        self._rx = &self._reception.rx
        self._phase = _GAP
        self._wake = self.quiet_at + self._gap
        if self._wake > now:
            return
        self._after_gap(now)

    def _finish(self, event) -> None:
        self._job = None
        self._read = None
        self._phase = _IDLE
        self._reception = None
        self._rx = NULL
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
            message = (
                f"the line was not quiet for {recovery_ms:.0f} ms in "
                f"{(self._settle_bound - self.quiet_at) * 1000:.0f} ms"
            )
            if self._read is not None:
                (<_Read>self._read).noisy(now, message)
                self._advance(now)
            else:
                self._resume(now, None, _Noisy(message))
            return
        self._wake = min(until, self._settle_bound)

    cdef void _send(self, double now) noexcept nogil:
        self._sent_stray = self._stray
        self._unbooked_stray += self._stray  # booked in stats with the GIL: _book_stray
        self._stray = 0
        self._sent_at = now
        self._request_end = now + self._rx.expected_len * self._char
        _rx_start(self._rx, self._request_end + self._no_answer)
        self._out_pending = True
        self._phase = _RECEIVE

    cdef _end_exchange(self, double now):
        reception = self._reception
        rx = self._rx
        cdef int result = _ANSWER
        cdef str detail = ""
        if not rx.done:
            reception.expire(INF)  # whatever is incomplete now is garbage
        if not rx.started:
            result = _SILENT
        elif rx.overrun or rx.capped:
            result = _GARBLED
            detail = "the line did not go quiet"
        elif not rx.done:  # the parser saw it all (a strict reception ends only now)
            got = reception._events
            if rx.garbled or len(got) != 1 or not expected_kind(got[0], self._expect_ack):
                result = _GARBLED
                detail = ", ".join([type(e).__name__ for e in got])
        data = reception.data
        self.quiet_at = max(self._request_end, rx.last_at)
        self.ready_at = self.quiet_at + self._times.gap
        self._garbled = result == _GARBLED
        self._book_stray()
        stats = self.stats
        stats.exchanges += 1
        stats.bytes_sent += len(self._request)
        stats.bytes_received += rx.count
        stats.echoes += rx.echo_seen
        if result == _SILENT:
            stats.silent += 1
        elif result == _GARBLED:
            stats.garbled += 1
        else:
            stats.answers += 1
        exchange = None
        if self.report_exchanges or self._read is None:
            if rx.done and result == _ANSWER:
                frames = (data,)  # the answer is all that came
            else:
                frames = tuple([raw_frame(e) for e in reception.events
                                if not isinstance(e, Discarded)])
            exchange = Exchange(
                self._request,
                _OUTCOMES[result],
                frames,
                self._sent_at,
                self._request_end,
                reception.first_at,
                now,
                echo=rx.echo_seen,
                stray=self._sent_stray,
                detail=detail,
                received=data,
            )
            if self.report_exchanges:
                self._events.append(exchange)
        self._reception = None
        self._rx = NULL
        self._phase = _IDLE
        if self._read is None:
            self._resume(now, exchange)
            return
        (<_Read>self._read).exchanged(now, result, data if result == _ANSWER else None, detail)
        self._advance(now)

    cdef void _book_stray(self):
        """The stray bytes ``_send`` counted, in ``stats``: by the thread that drives the
        protocol, so a reader of ``stats`` in another thread never races with it."""
        self.stats.stray_bytes += self._unbooked_stray
        self._unbooked_stray = 0

    # ---------------------------------------------------------------- for the jobs

    def _fcb_of(self, key, bint reset) -> bool:
        return True if reset else not self._fcb.get(key, False)

    def _set_fcb(self, key, bint fcb) -> None:
        self._fcb[key] = fcb

    def _telegram(self, int count) -> None:
        if self.report_progress:
            self._events.append(Telegram(count))

    def _more(self, bytes frame) -> bool:
        return bool(self._more_follows(frame))


# ------------------------------------------------------------------ the jobs (generators)
# A job yields (_OP_EXCHANGE, request, times, expect_ack, strict) and gets the Exchange back,
# or (_OP_LISTEN, seconds, times) and gets the bytes heard; it reads the time of its step as ``proto._at``, and returns its result
# or raises _JobFailed.


def _attempts(bytes request, times, int attempts, str label, expect_ack):
    """Up to ``attempts`` tries; returns the answering exchange and the tries used."""
    return (yield from _tried(_Attempts(request, times, attempts, label, expect_ack)))


def _tried(_Attempts tries):
    """``tries`` on the line until their rule ends them."""
    cdef int verdict
    while True:
        try:
            last = yield (_OP_EXCHANGE, tries.request, tries.times, tries.expect_ack, False)
        except _Noisy as exc:
            raise _JobFailed(tries.noisy(str(exc)))
        verdict = tries.after(_OUTCOMES.index(last.outcome), last.detail)
        if verdict == _TRY_ANSWERED:
            return last, tries.used
        if verdict == _TRY_FAILED:
            raise _JobFailed(tries.failed)


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


def _application_reset(BusProtocol proto, target, subcode, times):
    selection = _addressing(target, times, False)
    if selection is not None:
        yield from _tried(selection)
    exchange, _ = yield from _attempts(
        application_reset(_link(target), subcode), times, times.read_attempts, target.label,
        True,
    )
    return exchange


def _identify(BusProtocol proto, int link, times, int requests, double begun):
    """After an E5: read the telegram strictly; garbage means several meters answered."""
    for _ in range(times.read_attempts):
        exchange = yield from _strict(req_ud2(link, True), times, False)
        requests += 1
        now = proto._at
        if exchange is None:
            return Probe(ProbeKind.COLLISION, None, requests, now - begun)
        if exchange.outcome is Outcome.ANSWER:
            return Probe(ProbeKind.FOUND, exchange.frame, requests, now - begun)
        if exchange.outcome is Outcome.GARBLED:
            return Probe(ProbeKind.COLLISION, None, requests, now - begun)
    now = proto._at
    return Probe(ProbeKind.UNREADABLE, None, requests, now - begun)


def _probe_primary(BusProtocol proto, int address, times):
    begun = proto._at
    requests = 0
    for _ in range(times.select_attempts):
        exchange = yield from _strict(snd_nke(address), times, True)
        requests += 1
        if exchange is None:
            break
        if exchange.outcome is Outcome.SILENT:
            now = proto._at
            return Probe(ProbeKind.EMPTY, None, requests, now - begun)
        if exchange.outcome is Outcome.ANSWER:
            return (yield from _identify(proto, address, times, requests, begun))
    now = proto._at
    return Probe(ProbeKind.COLLISION, None, requests, now - begun)


def _probe_secondary(BusProtocol proto, bytes selection, times):
    begun = proto._at
    # One try only: silence is a definitive "nobody", garbage the signal to narrow down.
    # Listen until the window closes: a slower meter's E5 may still come, and a meter still
    # waiting to send its E5 would not hear the REQ_UD2 that follows.
    exchange = yield from _strict(selection, times, True)
    now = proto._at
    if exchange is None or exchange.outcome is Outcome.GARBLED:
        return Probe(ProbeKind.COLLISION, None, 1, now - begun)
    if exchange.outcome is Outcome.SILENT:
        return Probe(ProbeKind.EMPTY, None, 1, now - begun)
    # A clean E5 can still be several identical E5s on top of each other: the telegrams that
    # follow cannot be identical, so the read decides.
    return (yield from _identify(proto, ADDRESS_SELECTED, times, 1, begun))
