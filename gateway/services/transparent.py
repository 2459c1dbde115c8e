"""Transparent M-Bus: a master's requests go to a physical line and the line's answers back
(docs/slave.md). Two services can run at once, each on its own line and port.

A session takes the line through the bus engine's raw access (``BusMaster.raw``) for as long
as the master stays: scheduled reads, scans and continuous mode wait in the line's queue and
resume when the session ends or times out. The line is not subject to the meter capacity.

Bytes from the master are gathered for the packing interval after the first one arrives, then:
- packing "mbus": taken apart into frames; each valid frame is sent on the line and its answer
  returned; bytes that form no frame never reach the line (counted as refused frames); a frame
  cut by the interval waits for its rest; gathering ends early when the bytes so far end with
  a complete frame;
- packing "transparent": everything gathered is sent as it is.
What the line answers (every byte, frame or not) goes back to the master. A session ends when
the master leaves or sends nothing for the inactivity timeout; one master at a time (the line is
one bus): another is accepted and closed at once.
"""

from __future__ import annotations

import math
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, Protocol

import trio

from mbusgw.core.frame import Discarded, FrameParser, LongFrame, ShortFrame
from mbusgw.core.slave import ACK
from mbusgw.gateway.facade import WARNING
from mbusgw.gateway.services.slave import (
    SlaveCounters,
    Status,
    peer_name,
    registered,
    run_session,
)
from mbusgw.gateway.settings import Settings
from mbusgw.gateway.slave_settings import TransparentMBusSettings

RECEIVE = 4096
MAX_GATHER = 4096  # bytes gathered in one interval at most: a flood is sent in pieces


class RawExchange(Protocol):
    received: bytes


class RawLine(Protocol):
    async def send(self, data: bytes) -> RawExchange: ...


class RawBus(Protocol):
    def raw(self) -> AbstractAsyncContextManager[RawLine]: ...


class TransparentHost(Protocol):
    """What transparent M-Bus needs of the running gateway (``GatewayHandle`` has it)."""

    lines: dict[str, Any]  # interface name → line; its ``master`` has ``raw()``
    service_status: dict[str, Status]

    @property
    def settings(self) -> Settings: ...

    def log(self, level: int, origin: str, text: str) -> None: ...


async def gather(
    stream: trio.abc.Stream,
    first: bytes,
    interval: float,
    counters: SlaveCounters,
    parser: FrameParser | None = None,
) -> tuple[bytes, list[object], bool]:
    """``first`` and what else the master sends within ``interval`` seconds of it, the frame
    events ``parser`` (packing "M-Bus") made of them, and whether the master closed its side.
    With a parser, gathering ends early once the bytes end with a complete frame: waiting
    longer could only delay it."""
    parts = [first]
    size = len(first)
    events: list[object] = []
    if parser is not None:
        parser.feed(first)
        events += parser.events()
    with trio.move_on_after(interval):
        while size < MAX_GATHER and (parser is None or parser.buffered):
            data = await stream.receive_some(RECEIVE)
            if not data:
                return b"".join(parts), events, True
            counters.bytes_in += len(data)
            parts.append(data)
            size += len(data)
            if parser is not None:
                parser.feed(data)
                events += parser.events()
    return b"".join(parts), events, False


async def relay(
    stream: trio.abc.Stream,
    bus: RawBus,
    settings: TransparentMBusSettings,
    counters: SlaveCounters,
) -> str:
    """Pass one master's requests to the line until it leaves or is idle; returns why. The
    line is taken when the first bytes come, and given back when the session ends."""
    first = await _receive(stream, settings.inactivity_timeout_s)
    if not first:
        return _ended(first, counters)
    async with bus.raw() as line:
        parser = FrameParser() if settings.packing == "mbus" else None
        interval = settings.packing_interval_ms / 1000
        while first:
            counters.bytes_in += len(first)
            data, events, closed = await gather(stream, first, interval, counters, parser)
            requests = [data] if parser is None else []
            for event in events:
                if isinstance(event, Discarded):
                    counters.refused_frames += 1
                else:
                    requests.append(frame_bytes(event))
            for request in requests:
                counters.frames_in += 1
                exchange = await line.send(request)
                if exchange.received:
                    counters.frames_out += 1
                    counters.bytes_out += len(exchange.received)
                    await stream.send_all(exchange.received)
            if closed:
                return "closed by the master"
            first = await _receive(stream, settings.inactivity_timeout_s)
    return _ended(first, counters)


async def _receive(stream: trio.abc.Stream, timeout: int) -> bytes | None:
    """The master's next bytes; b"" when it closed, None after ``timeout`` s (0: never)."""
    with trio.move_on_after(timeout or math.inf):
        return await stream.receive_some(RECEIVE)
    return None


def _ended(first: bytes | None, counters: SlaveCounters) -> str:
    if first is None:
        counters.timeouts += 1
        return "inactivity timeout"
    return "closed by the master"


def frame_bytes(event: object) -> bytes:
    """A parsed frame's bytes as they go on the wire."""
    if isinstance(event, LongFrame):
        return bytes(event.raw)
    if isinstance(event, ShortFrame):
        check = (event.control + event.address) & 0xFF
        return bytes((0x10, event.control, event.address, check, 0x16))
    return ACK  # the single character


class TransparentMBusService:
    """Service ``transparent-mbus-<n>``: ready (``task_status.started(port)``) once it listens."""

    def __init__(self, host: TransparentHost, number: int) -> None:
        self.host = host
        self.number = number
        self.name = f"transparent-mbus-{number}"
        self.counters = SlaveCounters()
        self.port: int | None = None

    @property
    def settings(self) -> TransparentMBusSettings:
        slave = self.host.settings.slave
        return slave.transparent_1 if self.number == 1 else slave.transparent_2

    def status(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "enabled": settings.enabled,
            "port": self.port,
            "line": self._line_name(settings),
            **self.counters.as_dict(),
        }

    def _line_name(self, settings: TransparentMBusSettings) -> str | None:
        if settings.line:
            return settings.line if settings.line in self.host.lines else None
        return next(iter(self.host.lines), None)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        settings = self.settings
        self.counters.sessions_open = 0
        name = self._line_name(settings)
        if not settings.enabled or name is None:
            if settings.enabled:
                self.log(WARNING, f"line {settings.line or '(first)'} does not exist: not serving")
            self.port = None
            task_status.started(None)
            await trio.sleep_forever()
        bus = self.host.lines[name].master
        listeners = await trio.open_tcp_listeners(settings.port, host=settings.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, partial(self.serve, bus, settings), listeners)
            task_status.started(self.port)

    async def serve(
        self, bus: RawBus, settings: TransparentMBusSettings, stream: trio.abc.Stream
    ) -> None:
        """One master on a connection (or a slave serial port), one at a time."""

        await run_session(
            stream,
            peer_name(stream),
            self.counters,
            1,
            self.log,
            lambda master: relay(master, bus, settings, self.counters),
        )

    def log(self, level: int, text: str) -> None:
        self.host.log(level, self.name, text)


def transparent_mbus_1(gateway: TransparentHost) -> TransparentMBusService:
    """Entry point ``mbusgw.northbound``: the first transparent M-Bus service."""
    return registered(gateway, TransparentMBusService(gateway, 1))


def transparent_mbus_2(gateway: TransparentHost) -> TransparentMBusService:
    """Entry point ``mbusgw.northbound``: the second transparent M-Bus service."""
    return registered(gateway, TransparentMBusService(gateway, 2))
