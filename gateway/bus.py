"""The wired M-Bus master: one task owns a line and does every exchange on it.

Other tasks call ``BusMaster.read``/``ping``/``probe_*``/…; each call puts a request on a
bounded memory channel and waits for the answer, so exchanges never interleave on the wire (a
secondary selection and the read that follows it stay together). The bus task:

* keeps the inter-frame gap after the line's last activity, drops bytes that arrived since the
  last exchange (late answers, noise), and sends the request shielded from cancellation (half a
  frame on the wire would confuse every meter);
* times the answer from the end of the request on the wire (``len × 11 bit``): silence until
  the response timeout plus one character means no answer (EN 13757-2: a slave answers within
  330 bit times + 50 ms). A complete, valid frame ends the reception at once, without waiting
  for a timeout: that is what keeps the line busy with useful characters when reading back to
  back. Anything else (a bad checksum, two frames, bytes left over) is a garbled answer, i.e. a
  collision; then the master waits until the answer window has closed, and sends again only
  after the line has been silent for the collision recovery time, so late bytes cannot spill
  into the next exchange. Scan probes listen until the window closes even after a clean answer:
  a second, slower meter must not go unnoticed;
* removes the echo of its own request that some converters send back;
* retries per the timing settings (EN 13757-2 §5.4: at most two repetitions by default),
  toggles the FCB for each further telegram of a multi-telegram answer and repeats it after a
  lost answer, and falls back through the meter's addressing modes;
* reading back to back (``keep_link``), leaves out the SND_NKE before a primary read while it
  knows the meter's link state (``LinkStates``), after one broadcast SND_NKE for the line.

The exchange reads the line itself and feeds what comes into the answer being awaited (a
``Reception``); what came between exchanges is read without waiting just before the next
request. All waiting is on the trio clock, so the timing rules are tested under ``MockClock``.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import outcome
import trio

from mbusgw.core.frame import (
    Discarded,
    application_reset,
    req_ud2,
    select_secondary,
    snd_nke,
)
from mbusgw.core.records_follow import more_records_follow as records_follow
from mbusgw.gateway.errors import BusError, Collision, LineDown, NoResponse
from mbusgw.gateway.meters import AddressingMode, MultiTelegram
from mbusgw.gateway.reception import Reception, expected_kind, raw_frame
from mbusgw.gateway.settings import ConfigError, LineTiming
from mbusgw.gateway.transport import Transport, check_baudrate

ADDRESS_SELECTED = 0xFD
ADDRESS_BROADCAST = 0xFF  # every meter listens, none answers
COLLISION_QUIET_CHARS = 20
BITS_PER_CHAR = 11


@dataclass(frozen=True)
class MeterAddress:
    """How a meter can be reached. ``secondary`` is the 8-digit identification number."""

    primary: int | None = None
    secondary: str | None = None
    manufacturer: str | None = None
    version: int | None = None
    medium: int | None = None
    fabrication: str | None = None

    def __post_init__(self) -> None:
        if self.primary is not None and not 0 <= self.primary <= 250:
            raise ConfigError({"primary_address": f"{self.primary} is outside 0-250"})
        for name in ("secondary", "fabrication"):
            value = getattr(self, name)
            if value is not None and (
                len(value) != 8 or any(c not in "0123456789ABCDEFabcdef" for c in value)
            ):
                raise ConfigError({f"{name}_address": f"{value!r} is not 8 hexadecimal digits"})

    def supports(self, mode: AddressingMode) -> bool:
        if mode is AddressingMode.PRIMARY:
            return self.primary is not None
        if mode is AddressingMode.SECONDARY:
            return self.secondary is not None
        return self.secondary is not None and self.fabrication is not None

    def label(self, mode: AddressingMode | None = None) -> str:
        if mode is AddressingMode.PRIMARY or (mode is None and self.secondary is None):
            return f"primary {self.primary}"
        return f"secondary {self.secondary}"


@dataclass(frozen=True)
class Timing:
    """SPEC table 8. Times in seconds. ``None`` derives the value from the baud rate:
    ``response_timeout`` = 330 bit times + 50 ms (EN 13757-2), ``inter_frame_gap`` = 11 bit
    times, ``collision_recovery`` = 20 characters. After a garbled answer the master sends
    again only once the line has been silent for the collision recovery time: meters talking
    over each other can hold the line low (a break) for several characters, and the garble
    must be over before the next request. ``latency`` is what the converter or USB adapter
    may add (waited for in addition, and allowed as jitter between the characters of one
    answer)."""

    response_timeout: float | None = None
    read_attempts: int = 3
    select_attempts: int = 3
    wait_after_init: float = 0.0
    collision_recovery: float | None = None
    inter_frame_gap: float | None = None
    latency: float = 0.015

    def __post_init__(self) -> None:
        for name in ("read_attempts", "select_attempts"):
            if not 1 <= getattr(self, name) <= 10:
                raise ConfigError({f"timing.{name}": "must be between 1 and 10"})
        for name in ("response_timeout", "wait_after_init", "collision_recovery"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 60:
                raise ConfigError({f"timing.{name}": "must be between 0 and 60 s"})
        if self.inter_frame_gap is not None and not 0 <= self.inter_frame_gap <= 10:
            raise ConfigError({"timing.inter_frame_gap": "must be between 0 and 10 s"})
        if not 0 <= self.latency <= 5:
            raise ConfigError({"timing.latency": "must be between 0 and 5 s"})

    @classmethod
    def from_settings(cls, line: LineTiming, overrides: dict[str, float] | None = None) -> Timing:
        """From the stored settings (table 8 in ms, retries counted after the first try), with
        a meter's overrides (same field names) applied; 0 ms timeout/gap = derived."""
        return _timing_from_settings(line, tuple(sorted((overrides or {}).items())))


@functools.lru_cache(maxsize=1024)
def _timing_from_settings(line: LineTiming, overrides: tuple[tuple[str, float], ...]) -> Timing:
    """One ``Timing`` per distinct setting (the meters of a line mostly share one)."""
    values = {**asdict(line), **dict(overrides)}
    unknown = set(values) - {f.name for f in fields(LineTiming)}
    if unknown:
        raise ConfigError({f"timing.{name}": "unknown setting" for name in sorted(unknown)})
    return Timing(
        response_timeout=values["response_timeout_ms"] / 1000 or None,
        read_attempts=int(values["read_retries"]) + 1,
        select_attempts=int(values["select_retries"]) + 1,
        wait_after_init=values["wait_after_init_ms"] / 1000,
        collision_recovery=values["collision_recovery_ms"] / 1000 or None,
        inter_frame_gap=values["inter_frame_gap_ms"] / 1000 or None,
    )


def response_bound(baud: int) -> float:
    """EN 13757-2: the latest a slave may start its answer after the request, 330 bit + 50 ms."""
    return 330 / baud + 0.050


@dataclass(frozen=True)
class LineTimes:
    """``Timing`` resolved for one baud rate."""

    char: float  # one character: 11 bit times
    response: float
    latency: float
    gap: float
    recovery: float
    after_init: float
    read_attempts: int
    select_attempts: int

    @property
    def char_gap(self) -> float:
        """Silence that ends an answer: no pauses are allowed inside a telegram."""
        return 2 * self.char + self.latency

    @property
    def no_answer(self) -> float:
        """From the end of the request until silence means "no answer"."""
        return self.response + self.char + self.latency


@functools.lru_cache(maxsize=256)
def resolve(timing: Timing, baud: int) -> LineTimes:
    char = BITS_PER_CHAR / baud
    return LineTimes(
        char=char,
        response=(
            response_bound(baud) if timing.response_timeout is None else timing.response_timeout
        ),
        latency=timing.latency,
        gap=char if timing.inter_frame_gap is None else timing.inter_frame_gap,
        recovery=(
            COLLISION_QUIET_CHARS * char
            if timing.collision_recovery is None
            else timing.collision_recovery
        ),
        after_init=timing.wait_after_init,
        read_attempts=timing.read_attempts,
        select_attempts=timing.select_attempts,
    )


@dataclass(frozen=True)
class ReadSettings:
    """How to read one meter (the per-meter settings of SPEC §1.3). ``timing``/``follow_up``
    None: the bus's timing; ``follow_up`` applies to the second and later telegrams."""

    modes: tuple[AddressingMode, ...] = (AddressingMode.PRIMARY,)
    multi_telegram: MultiTelegram = MultiTelegram.AUTO
    telegram_limit: int = 10
    init: bool = True  # SND_NKE before a primary read (resets the meter's telegram sequence)
    baud: int | None = None  # switch the line to this rate for the read
    timing: Timing | None = None
    follow_up: Timing | None = None

    def __post_init__(self) -> None:
        if not self.modes:
            raise ConfigError({"addressing_mode": "at least one addressing mode is needed"})
        if not 1 <= self.telegram_limit <= 64:
            raise ConfigError({"multi_telegram_limit": "must be between 1 and 64"})
        if self.baud is not None:
            check_baudrate(self.baud)


class Outcome(enum.Enum):
    ANSWER = "answer"
    SILENT = "silent"
    GARBLED = "garbled"


@dataclass(frozen=True)
class Exchange:
    """One request on the wire and what came back. Times on the trio clock."""

    request: bytes
    outcome: Outcome
    frames: tuple[bytes, ...]  # the valid frames received (one for a clean answer)
    sent_at: float
    request_end: float  # when the request's last character left, computed from the baud rate
    first_byte_at: float | None
    done_at: float
    echo: bool = False  # the converter echoed the request
    stray: int = 0  # bytes from earlier exchanges dropped before sending
    detail: str = ""

    @property
    def frame(self) -> bytes:
        return self.frames[0]


@dataclass(frozen=True)
class ReadReply:
    """The raw telegrams of one meter reading, in order."""

    address: MeterAddress
    mode: AddressingMode
    frames: tuple[bytes, ...]
    attempts: int  # requests sent in total (selection, init, every REQ_UD2 and its retries)
    started: float
    finished: float
    durations: tuple[float, ...]  # per telegram, retries included
    complete: bool  # False when the telegram limit stopped a meter that had more to send

    @property
    def duration(self) -> float:
        return self.finished - self.started


class ProbeKind(enum.Enum):
    EMPTY = "empty"  # nobody answered
    FOUND = "found"  # exactly one meter, with its telegram
    COLLISION = "collision"  # several meters (or noise): narrow the search
    UNREADABLE = "unreadable"  # acknowledged, but gave no readable telegram


@dataclass(frozen=True)
class Probe:
    kind: ProbeKind
    frame: bytes | None = None
    requests: int = 0
    duration: float = 0.0


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


def more_records_follow(raw: bytes) -> bool:
    """Whether the telegram ends with DIF 0x1F ("more records follow"): a walk over the record
    headers, not a decode (the pipeline decodes each telegram once). An undecodable telegram
    gives False: do not ask for more; the pipeline's decode reports the error."""
    return records_follow(raw)


@dataclass(frozen=True)
class _Ping:
    address: int


@dataclass(frozen=True)
class _Read:
    address: MeterAddress
    settings: ReadSettings
    on_telegram: Callable[[int], None] | None = None
    keep_link: bool = False


@dataclass(frozen=True)
class _ProbePrimary:
    address: int


@dataclass(frozen=True)
class _ProbeSecondary:
    mask: str
    manufacturer: str | None
    version: int | None
    medium: int | None
    fabrication: str | None


@dataclass(frozen=True)
class _ApplicationReset:
    address: MeterAddress
    subcode: int | None
    mode: AddressingMode


@dataclass(frozen=True)
class _Transfer:
    frame: bytes
    expect_ack: bool | None


@dataclass(frozen=True)
class _SetBaud:
    baud: int


@dataclass
class _Reply:
    done: trio.Event = field(default_factory=trio.Event)
    result: outcome.Outcome | None = None


class LinkStates:
    """What a master knows of its meters' link layer (the FCB and the telegram sequence), so
    that reading back to back can leave out the SND_NKE before each primary read. A meter is
    *known* after a complete read: the next REQ_UD2 with the other FCB asks it for a new
    telegram, the first of its sequence (a meter that sends its last telegram again instead is
    noticed, and from then on gets its SND_NKE). It is *fresh* after a broadcast SND_NKE until
    it is read. Anything else the master sends may reach any meter: then nothing is known."""

    def __init__(self) -> None:
        self.known: dict[Any, int] = {}  # (PRIMARY, address) → telegrams of its last read
        self.no_restart: set[Any] = set()  # meters that need SND_NKE to start over
        self.broadcast_sent = False  # since the last time everything was forgotten
        self._fresh = False  # the broadcast was sent, and nobody answered it
        self._touched: set[Any] = set()  # read since the broadcast

    def is_fresh(self, key: Any) -> bool:
        return self._fresh and key not in self._touched

    def reset_by_broadcast(self, clean: bool) -> None:
        self.known.clear()
        self._touched.clear()
        self.broadcast_sent = True
        self._fresh = clean

    def reading(self, key: Any) -> None:
        """A request to the meter is about to go out: its state is unknown until it is read."""
        self.known.pop(key, None)
        self._touched.add(key)

    def read_completely(self, key: Any, telegrams: int) -> None:
        if telegrams == 1 or key not in self.no_restart:
            self.known[key] = telegrams

    def forget_all(self) -> None:
        self.known.clear()
        self._touched.clear()
        self.broadcast_sent = False
        self._fresh = False


class BusMaster:
    """The master of one line. Start ``run`` in a nursery (``await nursery.start(bus.run)``),
    then call the request methods from any task."""

    def __init__(
        self,
        transport: Transport,
        *,
        timing: Timing | None = None,
        name: str | None = None,
        queue: int = 16,
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.transport = transport
        self.on_exchange = on_exchange  # sees every exchange (a bus monitor, statistics)
        self.timing = timing or Timing()
        self.name = name or transport.name
        self.stats = BusStats()
        self._requests, self._incoming = trio.open_memory_channel[tuple[Any, Any]](queue)
        self._running = False
        self._quiet_at = -math.inf  # when the line's last activity ended
        self._gap = 0.0  # the inter-frame gap of the last exchange
        self._threshold = False  # the stream holds bytes back until a frame's rest is there
        self._stray = 0  # bytes received since the last exchange
        self._stray_at = -math.inf  # when the last of them came
        self._garbled = False
        self._fcb: dict[Any, bool] = {}  # (mode, address) → the FCB of the last REQ_UD2
        self._links = LinkStates()
        self._handlers = {
            _Ping: self._handle_ping,
            _Read: self._handle_read,
            _ProbePrimary: self._handle_probe_primary,
            _ProbeSecondary: self._handle_probe_secondary,
            _ApplicationReset: self._handle_application_reset,
            _Transfer: self._handle_transfer,
            _SetBaud: self._handle_set_baud,
        }

    # ------------------------------------------------------------------ the bus task

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the line until cancelled: serve requests one by one; an exchange reads the line
        itself, and what came in between exchanges (late answers, noise) is read and counted
        before the next one. When it stops, the request in hand and those queued fail with
        LineDown."""
        reply: _Reply | None = None
        try:
            self._running = True
            task_status.started()
            while True:
                try:
                    request, reply = self._incoming.receive_nowait()
                except trio.WouldBlock:
                    request, reply = await self._incoming.receive()
                if type(request) is not _Read:
                    self._links.forget_all()  # anything else may reach any meter's link
                handler = self._handlers[type(request)]
                try:
                    reply.result = outcome.Value(await handler(request))
                except trio.BrokenResourceError as exc:
                    error = LineDown(f"{self.name}: {exc}")
                    error.__cause__ = exc
                    reply.result = outcome.Error(error)
                except Exception as exc:  # the caller gets it; the line keeps serving
                    reply.result = outcome.Error(exc)
                reply.done.set()  # a caller that gave up waiting simply never looks
                # keep the inter-frame gap now: the next request (a caller reading back to
                # back sends it meanwhile) then goes out without another wake-up
                if self._quiet_at + self._gap > trio.current_time():
                    await trio.sleep_until(self._quiet_at + self._gap)
        finally:
            self._running = False
            stopped = LineDown(f"{self.name}: the bus task stopped")
            waiting = [reply] if reply is not None and not reply.done.is_set() else []
            while True:
                try:
                    waiting.append(self._incoming.receive_nowait()[1])
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            for pending in waiting:
                pending.result = outcome.Error(stopped)
                pending.done.set()

    async def submit(self, request: Any) -> Any:
        if not self._running:
            raise LineDown(f"{self.name}: the bus task is not running")
        reply = _Reply()
        try:
            self._requests.send_nowait((request, reply))  # no extra task switch
        except trio.WouldBlock:
            await self._requests.send((request, reply))
        await reply.done.wait()
        return reply.result.unwrap()

    # ------------------------------------------------------------------ public requests

    async def ping(self, address: int) -> Exchange:
        """SND_NKE to a primary address (or 0xFD, 0xFE); expects E5, returns the exchange."""
        return await self.submit(_Ping(address))

    async def read(
        self,
        address: MeterAddress,
        settings: ReadSettings | None = None,
        *,
        on_telegram: Callable[[int], None] | None = None,
        keep_link: bool = False,
    ) -> ReadReply:
        """Read one meter completely (every telegram, up to the limit). ``on_telegram(n)`` is
        called in the bus task after each telegram (a progress display). ``keep_link`` (reading
        back to back) leaves out the SND_NKE of a primary read while this master knows the
        meter's link state: its previous request to the meter was this master's read, one
        complete telegram, answered."""
        settings = settings or ReadSettings()
        return await self.submit(_Read(address, settings, on_telegram, keep_link))

    async def probe_primary(self, address: int) -> Probe:
        """Scan step: is there one meter at ``address`` (0-250), several, or none?"""
        return await self.submit(_ProbePrimary(address))

    async def probe_secondary(
        self,
        mask: str,
        manufacturer: str | None = None,
        version: int | None = None,
        medium: int | None = None,
        fabrication: str | None = None,
    ) -> Probe:
        """Scan step: select with ``mask`` (F = any digit) and see who answers."""
        return await self.submit(
            _ProbeSecondary(mask.upper(), manufacturer, version, medium, fabrication)
        )

    async def select(
        self,
        mask: str,
        manufacturer: str | None = None,
        version: int | None = None,
        medium: int | None = None,
        fabrication: str | None = None,
    ) -> Exchange:
        """One secondary selection, one try; the outcome says who answered. The selected meter
        stays selected for requests to address 0xFD until another selection."""
        request = select_secondary(mask.upper(), manufacturer, version, medium, fabrication)
        return await self.transfer(request, expect_ack=True)

    async def application_reset(
        self,
        address: MeterAddress,
        subcode: int | None = None,
        mode: AddressingMode = AddressingMode.PRIMARY,
    ) -> Exchange:
        return await self.submit(_ApplicationReset(address, subcode, mode))

    async def transfer(self, frame: bytes, *, expect_ack: bool | None = None) -> Exchange:
        """Send any frame and collect the answer (for transparent M-Bus and tools);
        ``expect_ack``: True for E5, False for RSP_UD, None for any valid frame."""
        return await self.submit(_Transfer(bytes(frame), expect_ack))

    async def set_baudrate(self, baud: int) -> None:
        await self.submit(_SetBaud(baud))

    # ------------------------------------------------------------------ one exchange

    def _times(self, timing: Timing | None = None) -> LineTimes:
        return resolve(timing or self.timing, self.transport.baudrate)

    async def exchange(
        self,
        request: bytes,
        times: LineTimes,
        *,
        expect_ack: bool | None,
        strict: bool = False,
    ) -> Exchange:
        """Send ``request`` and receive the answer. ``strict`` listens until the answer window
        has closed even after a complete frame (a scan must notice a second, late meter)."""
        self._gap = times.gap
        if self._quiet_at + times.gap > trio.current_time():
            await trio.sleep_until(self._quiet_at + times.gap)
        await self._collect_stray()
        if self._garbled:
            await self._settle(times.recovery)
        stray, self._stray = self._stray, 0
        self.stats.stray_bytes += stray
        sent_at = trio.current_time()
        request_end = sent_at + len(request) * times.char
        reception = Reception(
            request,
            request_end + times.no_answer,
            char=times.char,
            char_gap=times.char_gap,
            expect_ack=expect_ack,
            strict=strict,
        )
        try:
            await self._send(request)
            await self._await_answer(reception)
        finally:
            self._release_threshold()
        if reception.error is not None:
            raise LineDown(str(reception.error)) from reception.error
        got = reception.events
        frames = tuple(raw_frame(e) for e in got if not isinstance(e, Discarded))
        detail = ""
        if reception.first_at is None:
            result = Outcome.SILENT
        elif reception.garbled or len(got) != 1 or not expected_kind(got[0], expect_ack):
            result = Outcome.GARBLED
            detail = ", ".join(type(e).__name__ for e in got)
        else:
            result = Outcome.ANSWER
        done_at = trio.current_time()
        last_at = reception.last_at
        self._quiet_at = request_end if last_at is None else max(request_end, last_at)
        self._garbled = result is Outcome.GARBLED
        stats = self.stats
        stats.exchanges += 1
        stats.bytes_sent += len(request)
        stats.bytes_received += reception.count
        stats.echoes += reception.echo_seen
        if result is Outcome.SILENT:
            stats.silent += 1
        elif result is Outcome.GARBLED:
            stats.garbled += 1
        else:
            stats.answers += 1
        exchange = Exchange(
            request,
            result,
            frames,
            sent_at,
            request_end,
            reception.first_at,
            done_at,
            echo=reception.echo_seen,
            stray=stray,
            detail=detail,
        )
        if self.on_exchange is not None:
            self.on_exchange(exchange)
        return exchange

    async def _send(self, request: bytes) -> None:
        """Put the request on the line, shielded from cancellation (half a frame on the wire
        would confuse every meter). A stream that can take it at once is not waited on."""
        try:
            sent = self.transport.send_now(request)
            if sent < len(request):
                with trio.CancelScope(shield=True):
                    await self.transport.send_all(request[sent:])
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise LineDown(f"{self.name}: {exc}") from exc

    async def _await_answer(self, reception: Reception) -> None:
        """Receive until the answer is complete, or until the line has been silent long
        enough: each chunk that comes in moves the deadline."""
        transport = self.transport
        grace = True
        while not reception.done:
            data = None
            with trio.move_on_at(reception.deadline):
                try:
                    data = await transport.receive_some(4096)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    reception.fail(exc)
                    return
            if data is not None:
                if self._take(reception, data):
                    await trio.sleep_until(reception.pace_until)
                continue
            if self._threshold and grace:
                # the stream held back an incomplete rest of a frame: take what is there and
                # give it the silence that ends an answer to arrive
                grace = False
                self._release_threshold()
                reception.deadline = trio.current_time() + reception.char_gap
                continue
            if reception.buffered and not reception.garbled:
                reception.garbled = True  # a truncated answer: is a late meter still coming?
                if reception.deadline < reception.window_end:
                    reception.deadline = reception.window_end
                    continue
            reception.finish()
            return

    def _take(self, reception: Reception, data: bytes) -> bool:
        """Feed a chunk to the answer; True: wait until the rest of the frame can be there
        before reading again (a line that cannot hold it back itself)."""
        if not data:
            reception.fail(trio.BrokenResourceError(f"{self.name}: closed by the other end"))
        elif reception.take(trio.current_time(), data):
            # the rest of a long frame is still on the wire: let it gather in the kernel's
            # buffer instead of waking for every few bytes (CPU on weak hardware)
            if not self.transport.set_receive_threshold(reception.remaining):
                return True
            self._threshold = True
        else:  # the frame is in: whatever follows it must be seen at once
            self._release_threshold()
        return False

    def _release_threshold(self) -> None:
        if self._threshold:
            self._threshold = False
            self.transport.set_receive_threshold(1)

    def _count_stray(self, data: bytes) -> None:
        self._stray += len(data)
        self._stray_at = trio.current_time()

    async def _collect_stray(self) -> None:
        """Count what came in since the last exchange (a late answer, noise). A break found
        here is left to the send, which reconnects or tells."""
        try:
            while data := await self.transport.receive_waiting(4096):
                self._count_stray(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _settle(self, quiet: float) -> None:
        """Wait until nothing has arrived for ``quiet`` seconds (the end of a garble)."""
        while True:
            until = max(self._quiet_at, self._stray_at) + quiet
            if until <= trio.current_time():
                return
            with trio.move_on_at(until):
                try:
                    data = await self.transport.receive_some(4096)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return  # the send tells
                if not data:
                    return
                self._count_stray(data)

    # ------------------------------------------------------------------ exchanges with retries

    async def _attempts(
        self,
        request: bytes,
        times: LineTimes,
        attempts: int,
        label: str,
        *,
        expect_ack: bool,
    ) -> tuple[Exchange, int]:
        """Up to ``attempts`` tries; returns the answering exchange and the tries used."""
        garbled = 0
        last: Exchange | None = None
        for attempt in range(1, attempts + 1):
            last = await self.exchange(request, times, expect_ack=expect_ack)
            if last.outcome is Outcome.ANSWER:
                return last, attempt
            if last.outcome is Outcome.GARBLED:
                garbled += 1
        if garbled:
            raise Collision(label, attempts, last.detail if last else "")
        raise NoResponse(label, attempts)

    async def _handle_ping(self, request: _Ping) -> Exchange:
        times = self._times()
        exchange, _ = await self._attempts(
            snd_nke(request.address),
            times,
            times.read_attempts,
            str(request.address),
            expect_ack=True,
        )
        return exchange

    async def _handle_transfer(self, request: _Transfer) -> Exchange:
        return await self.exchange(request.frame, self._times(), expect_ack=request.expect_ack)

    async def _handle_set_baud(self, request: _SetBaud) -> None:
        self.transport.set_baudrate(request.baud)

    async def _address(
        self, address: MeterAddress, mode: AddressingMode, times: LineTimes, init: bool
    ) -> tuple[int, int]:
        """Make the meter addressable: select it (secondary) or reset its link (primary, if
        ``init``). Returns the link address to use and the requests spent."""
        label = address.label(mode)
        if mode is AddressingMode.PRIMARY:
            assert address.primary is not None
            if not init:
                return address.primary, 0
            _, used = await self._attempts(
                snd_nke(address.primary), times, times.read_attempts, label, expect_ack=True
            )
            if times.after_init:
                await trio.sleep(times.after_init)
            return address.primary, used
        assert address.secondary is not None
        selection = select_secondary(
            address.secondary,
            address.manufacturer,
            address.version,
            address.medium,
            address.fabrication if mode is AddressingMode.ESECONDARY else None,
        )
        _, used = await self._attempts(
            selection, times, times.select_attempts, label, expect_ack=True
        )
        return ADDRESS_SELECTED, used

    async def _handle_read(self, request: _Read) -> ReadReply:
        settings = request.settings
        if settings.baud is not None and settings.baud != self.transport.baudrate:
            self.transport.set_baudrate(settings.baud)
            self._links.forget_all()
        modes = [m for m in settings.modes if request.address.supports(m)]
        if not modes:
            raise ConfigError({"address": f"{request.address} has no address for {settings.modes}"})
        failures: list[BusError] = []
        for mode in modes:
            try:
                return await self._read_with(request, mode)
            except (NoResponse, Collision) as exc:
                failures.append(exc)  # fall back to the next addressing mode
        raise failures[-1]

    async def _read_with(self, request: _Read, mode: AddressingMode) -> ReadReply:
        address, settings = request.address, request.settings
        times = self._times(settings.timing)
        started = trio.current_time()
        primary = mode is AddressingMode.PRIMARY
        key = (mode, address.primary if primary else address.secondary)
        links = self._links
        requests = 0
        expected = 0  # telegrams of the meter's last read, when its link state is known
        fresh = False
        if primary and request.keep_link:
            if key not in links.known and not links.broadcast_sent:
                requests += await self._reset_line(times)  # one SND_NKE for every meter
            expected, fresh = links.known.get(key, 0), links.is_fresh(key)
        links.reading(key)
        if address.primary is not None:
            links.reading((AddressingMode.PRIMARY, address.primary))
        init = settings.init and not (expected or fresh)
        frames, durations, used, complete = await self._read_telegrams(
            request, mode, key, times, init, fresh
        )
        requests += used
        if settings.init and expected > 1 and len(frames) == 1 and complete:
            # it sent its last telegram again instead of starting over: only SND_NKE does that
            links.no_restart.add(key)
            frames, durations, used, complete = await self._read_telegrams(
                request, mode, key, times, True, False
            )
            requests += used
        if primary and complete:
            links.read_completely(key, len(frames))
        return ReadReply(
            address,
            mode,
            tuple(frames),
            requests,
            started,
            trio.current_time(),
            tuple(durations),
            complete,
        )

    async def _read_telegrams(
        self,
        request: _Read,
        mode: AddressingMode,
        key: Any,
        times: LineTimes,
        init: bool,
        fresh: bool,
    ) -> tuple[list[bytes], list[float], int, bool]:
        """Address the meter (SND_NKE first if ``init``) and read its telegrams, up to the
        limit. Returns the telegrams, the time each took, the requests sent, and whether the
        meter had no more (False: the limit stopped it)."""
        address, settings = request.address, request.settings
        follow = self._times(settings.follow_up or settings.timing)
        link, requests = await self._address(address, mode, times, init)
        reset = mode is not AddressingMode.PRIMARY or init or fresh  # it expects FCB 1 next
        fcb = True if reset else not self._fcb.get(key, False)
        limit = 1 if settings.multi_telegram is MultiTelegram.OFF else settings.telegram_limit
        frames: list[bytes] = []
        durations: list[float] = []
        label = address.label(mode)
        for index in range(limit):
            step = times if index == 0 else follow
            begun = trio.current_time()
            exchange, used = await self._attempts(
                req_ud2(link, fcb), step, step.read_attempts, label, expect_ack=False
            )
            requests += used
            self._fcb[key] = fcb
            fcb = not fcb
            frames.append(exchange.frame)
            durations.append(trio.current_time() - begun)
            if request.on_telegram is not None:
                request.on_telegram(len(frames))
            if not more_records_follow(exchange.frame):
                return frames, durations, requests, True
        return frames, durations, requests, False

    async def _reset_line(self, times: LineTimes) -> int:
        """SND_NKE to every meter of the line at once (no meter answers a broadcast); returns
        the requests sent."""
        exchange = await self.exchange(snd_nke(ADDRESS_BROADCAST), times, expect_ack=None)
        self._links.reset_by_broadcast(clean=exchange.outcome is Outcome.SILENT)
        if times.after_init:
            await trio.sleep(times.after_init)
        return 1

    async def _handle_application_reset(self, request: _ApplicationReset) -> Exchange:
        times = self._times()
        link, _ = await self._address(request.address, request.mode, times, init=False)
        exchange, _ = await self._attempts(
            application_reset(link, request.subcode),
            times,
            times.read_attempts,
            request.address.label(request.mode),
            expect_ack=True,
        )
        return exchange

    # ------------------------------------------------------------------ scan probes

    async def _identify(self, link: int, times: LineTimes, requests: int, begun: float) -> Probe:
        """After an E5: read the telegram strictly; garbage means several meters answered."""
        for _ in range(times.read_attempts):
            request = req_ud2(link, True)
            exchange = await self.exchange(request, times, expect_ack=False, strict=True)
            requests += 1
            if exchange.outcome is Outcome.ANSWER:
                return Probe(ProbeKind.FOUND, exchange.frame, requests, trio.current_time() - begun)
            if exchange.outcome is Outcome.GARBLED:
                return Probe(ProbeKind.COLLISION, None, requests, trio.current_time() - begun)
        return Probe(ProbeKind.UNREADABLE, None, requests, trio.current_time() - begun)

    async def _handle_probe_primary(self, request: _ProbePrimary) -> Probe:
        times = self._times()
        begun = trio.current_time()
        requests = 0
        for _ in range(times.select_attempts):
            request_frame = snd_nke(request.address)
            exchange = await self.exchange(request_frame, times, expect_ack=True, strict=True)
            requests += 1
            if exchange.outcome is Outcome.SILENT:
                return Probe(ProbeKind.EMPTY, None, requests, trio.current_time() - begun)
            if exchange.outcome is Outcome.ANSWER:
                return await self._identify(request.address, times, requests, begun)
        return Probe(ProbeKind.COLLISION, None, requests, trio.current_time() - begun)

    async def _handle_probe_secondary(self, request: _ProbeSecondary) -> Probe:
        times = self._times()
        begun = trio.current_time()
        selection = select_secondary(
            request.mask,
            request.manufacturer,
            request.version,
            request.medium,
            request.fabrication,
        )
        # One try only: silence is a definitive "nobody", garbage the signal to narrow down.
        # Listen until the window closes: a slower meter's E5 may still come, and a meter
        # still waiting to send its E5 would not hear the REQ_UD2 that follows.
        exchange = await self.exchange(selection, times, expect_ack=True, strict=True)
        if exchange.outcome is Outcome.SILENT:
            return Probe(ProbeKind.EMPTY, None, 1, trio.current_time() - begun)
        if exchange.outcome is Outcome.GARBLED:
            return Probe(ProbeKind.COLLISION, None, 1, trio.current_time() - begun)
        # A clean E5 can still be several identical E5s on top of each other: the telegrams
        # that follow cannot be identical, so the read decides.
        return await self._identify(ADDRESS_SELECTED, times, 1, begun)
