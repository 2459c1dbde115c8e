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

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import outcome
import trio

from mbusgw.core.busproto import (
    BusProtocol,
    BusStats,
    Done,
    Exchange,
    Failed,
    Probe,
    Target,
    Telegram,
)
from mbusgw.core.frame import select_secondary
from mbusgw.core.records_follow import more_records_follow
from mbusgw.gateway import busjobs as jobs
from mbusgw.gateway.busjobs import fail_ops
from mbusgw.gateway.busrequests import (
    MeterAddress,
    ReadSettings,
    failure_error,
    targets,
)
from mbusgw.gateway.bustiming import LineTimes, Timing, resolve
from mbusgw.gateway.errors import LineDown
from mbusgw.gateway.meters import AddressingMode, MultiTelegram
from mbusgw.gateway.replies import ReadReply, read_reply
from mbusgw.gateway.transport import Transport


class RawLine:
    """A line taken for raw access (the transparent M-Bus service): bytes out and back with
    the line's timing, while every other request to the line waits."""

    def __init__(self, master: BusMaster, hold: jobs.Hold) -> None:
        self._master = master
        self._hold = hold

    async def send(self, data: bytes, *, expect_ack: bool | None = None) -> Exchange:
        """``data`` on the wire after the inter-frame gap (and the recovery after a garble);
        the answer as the bus master times it. ``Exchange.received`` holds every byte that
        came back, frame or not."""
        return await self._op(jobs.Transfer(bytes(data), expect_ack))

    async def receive(self, seconds: float) -> bytes:
        """Whatever the line receives in the next ``seconds`` without a request."""
        if not 0 <= seconds <= 60:
            raise ValueError("seconds must be between 0 and 60")
        return await self._op(jobs.Listen(seconds))

    async def _op(self, request: Any) -> Any:
        reply = jobs.Reply()
        self._hold.ops.append((request, reply))
        self._master._notify(self._hold)
        await reply.done.wait()
        return reply.result.unwrap()


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
        # by meter: what its read settings come to on this line (see ``_read_plan``)
        self._read_plans: dict[tuple[int, int], _ReadPlan] = {}

    @property
    def stats(self) -> BusStats:
        return self.protocol.stats

    # ------------------------------------------------------------------ the bus task

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the line until cancelled: serve requests one by one. When it stops, the request
        in hand and those queued fail with LineDown."""
        reply: jobs.Reply | None = None
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
        reply = jobs.Reply()
        await self._enqueue(request, reply)
        await reply.done.wait()
        return reply.result.unwrap()

    async def _enqueue(self, request: Any, reply: jobs.Reply) -> None:
        try:
            self._requests.send_nowait((request, reply))  # no extra task switch
        except trio.WouldBlock:
            await self._requests.send((request, reply))

    # ------------------------------------------------------------------ public requests

    async def ping(self, address: int) -> Exchange:
        """SND_NKE to a primary address (or 0xFD, 0xFE); expects E5, returns the exchange."""
        return await self.submit(jobs.Ping(address))

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
        return await self.submit(jobs.Read(address, settings, on_telegram, keep_link))

    async def read_round(
        self,
        plan: Sequence[tuple[MeterAddress, ReadSettings]],
        on_read: Callable[[int, Any], None],
        *,
        keep_link: bool = False,
        prepare: jobs.Prepare | None = None,
    ) -> None:
        """Read the meters of ``plan`` one after the other (a round of continuous mode, a line's
        share of a read-all cycle). ``on_read(k, reading)`` is called in trio as soon as the
        k-th meter is read, with its ``ReadReply`` or the error that failed it; the round goes
        on either way. Requests of others still go in between two meters. This driver reads
        them as separate requests; the native one takes the round as one request.

        ``prepare(k, reading)``, when given, is called first, in whichever thread read the
        meter (the native driver's line thread: it must be thread-safe), and returns what
        ``on_read(k, ...)`` gets and how soon it must reach trio (``busjobs.Prepare``); the
        native driver lets those that may wait go with a later batch."""
        reads = tuple(jobs.Read(address, settings, None, keep_link) for address, settings in plan)
        await self._round(reads, on_read, prepare)

    async def _round(
        self,
        reads: tuple[jobs.Read, ...],
        on_read: Callable[[int, Any], None],
        prepare: jobs.Prepare | None,
    ) -> None:
        """The trio driver: one request per meter, so the round needs nothing of its own."""
        for k, read in enumerate(reads):
            try:
                got: ReadReply | Exception = await self.submit(read)
            except Exception as exc:  # that meter's outcome; the round goes on
                got = exc
            jobs.read_in_trio(on_read, prepare, k, got)

    async def probe_primary(self, address: int) -> Probe:
        """Scan step: is there one meter at ``address`` (0-250), several, or none?"""
        return await self.submit(jobs.ProbePrimary(address))

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
            jobs.ProbeSecondary(mask.upper(), manufacturer, version, medium, fabrication)
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
        return await self.submit(jobs.ApplicationReset(address, subcode, mode))

    async def transfer(self, frame: bytes, *, expect_ack: bool | None = None) -> Exchange:
        """Send any frame and collect the answer (for transparent M-Bus and tools);
        ``expect_ack``: True for E5, False for RSP_UD, None for any valid frame."""
        return await self.submit(jobs.Transfer(bytes(frame), expect_ack))

    async def set_baudrate(self, baud: int) -> None:
        await self.submit(jobs.SetBaud(baud))

    @contextlib.asynccontextmanager
    async def raw(self) -> AsyncIterator[RawLine]:
        """Take the line for raw access (``async with bus.raw() as line``): requests from
        others queue until the block is left."""
        if not self._running:
            raise LineDown(f"{self.name}: the bus task is not running")
        hold = jobs.Hold()
        reply = jobs.Reply()
        try:
            await self._enqueue(hold, reply)
            await hold.granted.wait()
            yield RawLine(self, hold)
        finally:
            hold.ops.append((None, None))  # given back (also when it never came)
            self._notify(hold)
        with trio.CancelScope(shield=True):
            await reply.done.wait()

    def _notify(self, hold: jobs.Hold) -> None:
        """An op for the holder of the line is there."""
        hold.more.set()

    async def _serve_hold(self, hold: jobs.Hold) -> None:
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
        # nothing is made for events nobody is given
        protocol.report_exchanges = self.on_exchange is not None
        if kind is jobs.Read:
            protocol.report_progress = request.on_telegram is not None
            return self._begin_read(request, now)
        times = self._times()
        if kind is jobs.Ping:
            protocol.ping(request.address, times, now=now)
        elif kind is jobs.Transfer:
            protocol.transfer(request.frame, times, now=now, expect_ack=request.expect_ack)
        elif kind is jobs.Listen:
            protocol.listen(request.seconds, times, now=now)
        elif kind is jobs.ProbePrimary:
            protocol.probe_primary(request.address, times, now=now)
        elif kind is jobs.ProbeSecondary:
            selection = select_secondary(
                request.mask,
                request.manufacturer,
                request.version,
                request.medium,
                request.fabrication,
            )
            protocol.probe_secondary(selection, times, now=now)
        elif kind is jobs.ApplicationReset:
            (target,) = targets(request.address, (request.mode,))
            protocol.application_reset(target, request.subcode, times, now=now)
        else:
            raise TypeError(f"not a bus request: {request!r}")
        return _same

    def _begin_read(self, request: jobs.Read, now: float) -> Callable[[Any], Any]:
        settings = request.settings
        if settings.baud is not None and settings.baud != self.transport.baudrate:
            self.transport.set_baudrate(settings.baud)
            self.protocol.links.forget_all()
        address = request.address
        plan = self._read_plan(address, settings)
        self.protocol.read(
            plan.ways,
            plan.times,
            plan.follow,
            now=now,
            init=settings.init,
            limit=plan.limit,
            keep_link=request.keep_link,
        )
        return functools.partial(read_reply, address)

    def _read_plan(self, address: MeterAddress, settings: ReadSettings) -> _ReadPlan:
        """What reading ``address`` with ``settings`` comes to at the line's rate. A meter is
        read with the same two objects again and again, so this is kept by their identity (a
        read costs no hashing of either); settings replaced meanwhile make a new entry, and
        the entries are dropped when there are more than a large site has meters."""
        baud = self.transport.baudrate
        plan = self._read_plans.get((id(address), id(settings)))
        if plan is None or plan.address is not address or plan.settings is not settings:
            if len(self._read_plans) >= _READ_PLANS_KEPT:
                self._read_plans.clear()
            plan = None
        if plan is None or plan.baud != baud or plan.line_timing is not self.timing:
            plan = _ReadPlan(
                address,
                settings,
                baud,
                self.timing,
                targets(address, settings.modes),
                self._times(settings.timing),
                self._times(settings.follow_up or settings.timing),
                1 if settings.multi_telegram is MultiTelegram.OFF else settings.telegram_limit,
            )
            self._read_plans[id(address), id(settings)] = plan
        return plan

    async def _serve(self, request: Any) -> Any:
        if type(request) is jobs.SetBaud:
            self.protocol.links.forget_all()
            self.transport.set_baudrate(request.baud)
            return None
        if type(request) is jobs.Hold:
            return await self._serve_hold(request)
        protocol = self.protocol
        transport = self.transport
        on_telegram = request.on_telegram if type(request) is jobs.Read else None
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


_READ_PLANS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    address: MeterAddress
    settings: ReadSettings
    baud: int
    line_timing: Timing
    ways: tuple[Target, ...]
    times: LineTimes
    follow: LineTimes
    limit: int


def _same(value: Any) -> Any:
    return value


def _call(callback: Callable[..., None], *args: Any) -> None:
    callback(*args)
