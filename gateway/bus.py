"""The wired M-Bus master: one task owns a line and does every exchange on it.

Other tasks call ``BusMaster.read``/``ping``/``probe_*``/…; each call puts a request on a
bounded memory channel and waits for the answer, so exchanges never interleave on the wire (a
secondary selection and the read that follows it stay together).

What is said on the line, and when, is decided by the line's ``BusProtocol``
(``mbusgw.core.busproto``: timing, retries, FCB, link states, addressing fallback, collision
recovery, echo removal, the hard bound of every attempt). ``BusMaster`` is its trio driver: it
writes what the protocol gives (shielded from cancellation: half a frame on the wire would
confuse every meter), feeds it what the line received and the trio time, and waits on the trio
clock until the protocol's next deadline, so every timing rule is tested under ``MockClock``.
While the rest of a long frame is on the wire it asks the stream to hold the bytes back
(TCP's receive low-water mark) instead of waking for every few bytes.
"""

from __future__ import annotations

import collections
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import outcome
import trio

from mbusgw.core.busproto import (
    ADDRESS_BROADCAST,
    ADDRESS_SELECTED,
    COLLISION,
    NO_RESPONSE,
    NOISY,
    BusProtocol,
    BusStats,
    Done,
    Exchange,
    Failed,
    LinkStates,
    Outcome,
    Probe,
    ProbeKind,
    Target,
    Telegram,
    Telegrams,
)
from mbusgw.core.frame import select_secondary
from mbusgw.core.records_follow import more_records_follow as records_follow
from mbusgw.gateway.errors import BusError, Collision, LineDown, LineNoisy, NoResponse
from mbusgw.gateway.meters import AddressingMode, MultiTelegram
from mbusgw.gateway.settings import ConfigError, LineTiming
from mbusgw.gateway.transport import Transport, check_baudrate

__all__ = [
    "ADDRESS_BROADCAST",
    "ADDRESS_SELECTED",
    "BusMaster",
    "BusStats",
    "Exchange",
    "LinkStates",
    "MeterAddress",
    "Outcome",
    "Probe",
    "ProbeKind",
    "RawLine",
    "ReadSettings",
    "ReadReply",
    "Timing",
    "failure_error",
    "resolve",
    "response_bound",
]

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
    retries: int = 0  # requests that repeated one already sent (0 for a clean read)

    @property
    def duration(self) -> float:
        return self.finished - self.started


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


@dataclass(frozen=True)
class _Listen:
    seconds: float


@dataclass
class _Reply:
    done: trio.Event = field(default_factory=trio.Event)
    result: outcome.Outcome | None = None
    failure: BaseException | None = None  # a callback of the request raised (native driver)


@dataclass
class _Hold:
    """Raw access: the line is the holder's until ``None`` comes among its ``ops``."""

    granted: trio.Event = field(default_factory=trio.Event)
    ops: collections.deque[tuple[Any, _Reply | None]] = field(default_factory=collections.deque)
    more: trio.Event = field(default_factory=trio.Event)  # an op came (trio driver)


class RawLine:
    """A line taken for raw access (the transparent M-Bus service): bytes out and back with
    the line's timing, while every other request to the line waits."""

    def __init__(self, master: BusMaster, hold: _Hold) -> None:
        self._master = master
        self._hold = hold

    async def send(self, data: bytes, *, expect_ack: bool | None = None) -> Exchange:
        """``data`` on the wire after the inter-frame gap (and the recovery after a garble);
        the answer as the bus master times it. ``Exchange.received`` holds every byte that
        came back, frame or not."""
        return await self._op(_Transfer(bytes(data), expect_ack))

    async def receive(self, seconds: float) -> bytes:
        """Whatever the line receives in the next ``seconds`` without a request."""
        if not 0 <= seconds <= 60:
            raise ValueError("seconds must be between 0 and 60")
        return await self._op(_Listen(seconds))

    async def _op(self, request: Any) -> Any:
        reply = _Reply()
        self._hold.ops.append((request, reply))
        self._master._notify(self._hold)
        await reply.done.wait()
        return reply.result.unwrap()


def failure_error(failed: Failed) -> BusError:
    """The gateway's error for a job the protocol gave up."""
    if failed.kind == NO_RESPONSE:
        return NoResponse(failed.label, failed.attempts)
    if failed.kind == NOISY:
        return LineNoisy(failed.label, failed.attempts, failed.detail)
    if failed.kind == COLLISION:
        return Collision(failed.label, failed.attempts, failed.detail)
    return BusError(f"{failed.label}: {failed.detail}")


@functools.lru_cache(maxsize=4096)
def targets(address: MeterAddress, modes: tuple[AddressingMode, ...]) -> tuple[Target, ...]:
    """The ways to reach ``address`` with ``modes``, in order (ConfigError: none); kept, as a
    meter is read with the same ones again and again."""
    found = []
    primary_key = None if address.primary is None else (AddressingMode.PRIMARY, address.primary)
    for mode in modes:
        if not address.supports(mode):
            continue
        label = address.label(mode)
        if mode is AddressingMode.PRIMARY:
            found.append(Target(mode, primary_key, label, address.primary, None, primary_key))
            continue
        selection = select_secondary(
            address.secondary or "",
            address.manufacturer,
            address.version,
            address.medium,
            address.fabrication if mode is AddressingMode.ESECONDARY else None,
        )
        key = (mode, address.secondary)
        found.append(Target(mode, key, label, None, selection, primary_key))
    if not found:
        raise ConfigError({"address": f"{address} has no address for {modes}"})
    return tuple(found)


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
        self.protocol = BusProtocol(more_records_follow)
        self._requests, self._incoming = trio.open_memory_channel[tuple[Any, Any]](queue)
        self._running = False
        self._threshold = False  # the stream holds bytes back until a frame's rest is there

    @property
    def stats(self) -> BusStats:
        return self.protocol.stats

    # ------------------------------------------------------------------ the bus task

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the line until cancelled: serve requests one by one. When it stops, the request
        in hand and those queued fail with LineDown."""
        reply: _Reply | None = None
        try:
            self._running = True
            task_status.started()
            while True:
                try:
                    request, reply = self._incoming.receive_nowait()
                except trio.WouldBlock:
                    request, reply = await self._incoming.receive()
                try:
                    reply.result = outcome.Value(await self._serve(request))
                except trio.BrokenResourceError as exc:
                    error = LineDown(f"{self.name}: {exc}")
                    error.__cause__ = exc
                    reply.result = outcome.Error(error)
                except Exception as exc:  # the caller gets it; the line keeps serving
                    reply.result = outcome.Error(exc)
                reply.done.set()  # a caller that gave up waiting simply never looks
                # keep the inter-frame gap now: the next request (a caller reading back to
                # back sends it meanwhile) then goes out without another wake-up
                if self.protocol.ready_at > trio.current_time():
                    await trio.sleep_until(self.protocol.ready_at)
        finally:
            self._running = False
            self.protocol.abort()
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
        await self._enqueue(request, reply)
        await reply.done.wait()
        return reply.result.unwrap()

    async def _enqueue(self, request: Any, reply: _Reply) -> None:
        try:
            self._requests.send_nowait((request, reply))  # no extra task switch
        except trio.WouldBlock:
            await self._requests.send((request, reply))

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

    @contextlib.asynccontextmanager
    async def raw(self) -> AsyncIterator[RawLine]:
        """Take the line for raw access (``async with bus.raw() as line``): requests from
        others queue until the block is left."""
        if not self._running:
            raise LineDown(f"{self.name}: the bus task is not running")
        hold = _Hold()
        reply = _Reply()
        try:
            await self._enqueue(hold, reply)
            await hold.granted.wait()
            yield RawLine(self, hold)
        finally:
            hold.ops.append((None, None))  # given back (also when it never came)
            self._notify(hold)
        with trio.CancelScope(shield=True):
            await reply.done.wait()

    def _notify(self, hold: _Hold) -> None:
        """An op for the holder of the line is there."""
        hold.more.set()

    async def _serve_hold(self, hold: _Hold) -> None:
        """Serve the holder of the line until it gives the line back."""
        hold.granted.set()
        try:
            while True:
                while not hold.ops:
                    hold.more = trio.Event()
                    await hold.more.wait()
                request, reply = hold.ops.popleft()
                if reply is None:
                    return
                try:
                    reply.result = outcome.Value(await self._serve(request))
                except Exception as exc:
                    reply.result = outcome.Error(exc)
                reply.done.set()
        finally:
            fail_ops(hold, LineDown(f"{self.name}: the bus task stopped"))

    # ------------------------------------------------------------------ one request

    def _times(self, timing: Timing | None = None) -> LineTimes:
        return resolve(timing or self.timing, self.transport.baudrate)

    def begin(self, request: Any, now: float) -> Callable[[Any], Any]:
        """Start ``request`` on the protocol at ``now``; returns what makes the job's result
        the caller's (a driver applies it to ``Done.value``)."""
        protocol = self.protocol
        kind = type(request)
        if kind is _Read:
            return self._begin_read(request, now)
        times = self._times()
        if kind is _Ping:
            protocol.ping(request.address, times, now=now)
        elif kind is _Transfer:
            protocol.transfer(request.frame, times, now=now, expect_ack=request.expect_ack)
        elif kind is _Listen:
            protocol.listen(request.seconds, times, now=now)
        elif kind is _ProbePrimary:
            protocol.probe_primary(request.address, times, now=now)
        elif kind is _ProbeSecondary:
            selection = select_secondary(
                request.mask,
                request.manufacturer,
                request.version,
                request.medium,
                request.fabrication,
            )
            protocol.probe_secondary(selection, times, now=now)
        elif kind is _ApplicationReset:
            (target,) = targets(request.address, (request.mode,))
            protocol.application_reset(target, request.subcode, times, now=now)
        else:
            raise TypeError(f"not a bus request: {request!r}")
        return _same

    def _begin_read(self, request: _Read, now: float) -> Callable[[Any], Any]:
        settings = request.settings
        if settings.baud is not None and settings.baud != self.transport.baudrate:
            self.transport.set_baudrate(settings.baud)
            self.protocol.links.forget_all()
        ways = targets(request.address, settings.modes)
        times = self._times(settings.timing)
        follow = self._times(settings.follow_up or settings.timing)
        limit = 1 if settings.multi_telegram is MultiTelegram.OFF else settings.telegram_limit
        self.protocol.read(
            ways,
            times,
            follow,
            now=now,
            init=settings.init,
            limit=limit,
            keep_link=request.keep_link,
        )
        address = request.address

        def reading(got: Telegrams) -> ReadReply:
            return ReadReply(
                address,
                got.mode,
                got.frames,
                got.requests,
                got.started,
                got.finished,
                got.durations,
                got.complete,
                got.retries,
            )

        return reading

    async def _serve(self, request: Any) -> Any:
        if type(request) is _SetBaud:
            self.protocol.links.forget_all()
            self.transport.set_baudrate(request.baud)
            return None
        if type(request) is _Hold:
            return await self._serve_hold(request)
        protocol = self.protocol
        transport = self.transport
        on_telegram = request.on_telegram if type(request) is _Read else None
        try:
            # what came between exchanges (late answers, noise) is stray: counted, dropped
            while data := await transport.receive_waiting(4096):
                protocol.receive(data, trio.current_time())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the send reconnects, or tells
        finish = self.begin(request, trio.current_time())
        try:
            while True:
                out = protocol.take_output()
                if out:
                    await self._send(out)
                ended = self.dispatch(protocol.pop_events(), on_telegram, _call)
                if ended is not None:
                    break
                if protocol.receiving:
                    await self._receive_answer()
                else:
                    await self._wait(protocol.deadline)
        except BaseException:
            protocol.abort()  # the line broke, or the bus task was cancelled
            raise
        finally:
            self._release_threshold()
        return self.result(ended, finish)

    def dispatch(
        self,
        events: list[Any],
        on_telegram: Callable[[int], None] | None,
        call: Callable[..., None],
    ) -> Done | Failed | None:
        """Pass the protocol's events on (``call(callback, argument)`` runs a callback where
        the driver's caller lives); returns the job's end, if it is among them."""
        ended = None
        for event in events:
            kind = type(event)
            if kind is Exchange:
                if self.on_exchange is not None:
                    call(self.on_exchange, event)
            elif kind is Telegram:
                if on_telegram is not None:
                    call(on_telegram, event.count)
            else:
                ended = event
        return ended

    @staticmethod
    def result(ended: Done | Failed, finish: Callable[[Any], Any]) -> Any:
        """The caller's result of a job that ended, or its error raised."""
        if type(ended) is Done:
            return finish(ended.value)
        raise failure_error(ended)

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

    async def _receive_answer(self) -> None:
        """Receive until the protocol's deadline: feed what comes, or tell it the time."""
        protocol, transport = self.protocol, self.transport
        data = None
        with trio.move_on_at(protocol.deadline):
            try:
                data = await transport.receive_some(4096)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise LineDown(f"{self.name}: {exc}") from exc
        if data is None and self._threshold:
            # the stream held back an incomplete rest of a frame: take what is there
            self._release_threshold()
            try:
                data = await transport.receive_waiting(4096) or None
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise LineDown(f"{self.name}: {exc}") from exc
        if data is None:
            protocol.tick(trio.current_time())
            if not protocol.receiving:
                self._release_threshold()
            return
        if not data:
            raise LineDown(f"{self.name}: closed by the other end")
        if protocol.receive(data, trio.current_time()):
            # the rest of a long frame is still on the wire: let it gather in the kernel's
            # buffer instead of waking for every few bytes (CPU on weak hardware)
            if transport.set_receive_threshold(protocol.remaining):
                self._threshold = True
            else:
                await trio.sleep_until(protocol.pace_until)
            return
        self._release_threshold()  # the frame is in: whatever follows must be seen at once

    async def _wait(self, deadline: float) -> None:
        """Between exchanges: until ``deadline``, bytes that come are stray (the protocol
        counts them, and they delay a retry after a garble)."""
        protocol = self.protocol
        if deadline > trio.current_time():
            data = None
            with trio.move_on_at(deadline):
                try:
                    data = await self.transport.receive_some(4096)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await trio.sleep_until(deadline)  # the send reconnects, or tells
            if data:
                protocol.receive(data, trio.current_time())
                return
            if data is not None:  # closed by the other end: the send tells
                await trio.sleep_until(deadline)
        protocol.tick(trio.current_time())

    def _release_threshold(self) -> None:
        if self._threshold:
            self._threshold = False
            self.transport.set_receive_threshold(1)


def fail_ops(hold: _Hold, error: BaseException) -> None:
    """The line went away under its holder: what it still waits for fails."""
    while hold.ops:
        _, reply = hold.ops.popleft()
        if reply is not None and not reply.done.is_set():
            reply.result = outcome.Error(error)
            reply.done.set()


def _same(value: Any) -> Any:
    return value


def _call(callback: Callable[..., None], *args: Any) -> None:
    callback(*args)
