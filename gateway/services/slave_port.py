"""Slave serial ports: a master on a serial line is served the virtual M-Bus or a transparent
M-Bus (docs/slave.md). Two ports, each its own service (``slave-port-1``, ``slave-port-2``).

The port is opened at the configured baud rate with M-Bus's 8E1 framing and stays open. A
session starts with the master's first bytes and ends after ``activity_timeout_s`` without a
complete frame (virtual) or without a byte (transparent); the system log records each one.
"""

from __future__ import annotations

import os
import termios
from collections.abc import Awaitable, Callable
from typing import Any

import serial
import trio

from mbusgw.gateway.facade import WARNING
from mbusgw.gateway.services.slave import SlaveCounters, registered, session
from mbusgw.gateway.services.transparent import TransparentHost, relay
from mbusgw.gateway.services.vmbus import MeterBook, SlaveHost, serve_master
from mbusgw.gateway.slave_settings import SlavePortSettings, TransparentMBusSettings

RECEIVE = 4096


class Replay(trio.abc.Stream):
    """A serial port as one session's stream: the bytes that started the session come first;
    closing it leaves the port open for the next session."""

    def __init__(self, stream: trio.abc.Stream, first: bytes, name: str) -> None:
        self._stream = stream
        self._first = first
        self.name = name

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._first:
            data, self._first = self._first, b""
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        pass


def open_port(settings: SlavePortSettings) -> trio.lowlevel.FdStream:
    """The serial port at its baud rate, 8E1, as a non-blocking stream of its own descriptor."""
    port = serial.Serial(
        settings.device, settings.baud, parity=serial.PARITY_EVEN, stopbits=1, timeout=0
    )
    try:
        fd = port.fileno()
        attrs = termios.tcgetattr(fd)
        attrs[6][termios.VMIN] = 1  # an idle line blocks instead of reading as end of file
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        return trio.lowlevel.FdStream(os.dup(fd))
    finally:
        port.close()


class SlavePortService:
    """Service ``slave-port-<n>``: ready (``task_status.started(device)``) once the port is open."""

    def __init__(self, host: Any, number: int) -> None:
        self.host: SlaveHost = host
        self.lines: TransparentHost = host
        self.number = number
        self.name = f"slave-port-{number}"
        self.counters = SlaveCounters()
        self.book = MeterBook(host)  # what the virtual M-Bus serves on this port

    @property
    def settings(self) -> SlavePortSettings:
        slave = self.host.settings.slave
        return slave.port_1 if self.number == 1 else slave.port_2

    def status(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "enabled": settings.enabled,
            "device": settings.device,
            "serves": settings.serves,
            **self.counters.as_dict(),
        }

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        settings = self.settings
        self.counters.sessions_open = 0
        if not settings.enabled:
            task_status.started(None)
            await trio.sleep_forever()
        async with trio.open_nursery() as nursery:
            serve = await self._server(settings, nursery)
            if serve is None:
                task_status.started(None)
                await trio.sleep_forever()
            stream = open_port(settings)
            async with stream:
                task_status.started(settings.device)
                while True:
                    first = await stream.receive_some(RECEIVE)
                    if not first:
                        raise OSError(f"{settings.device}: the port was closed")
                    master = Replay(stream, first, settings.device)
                    await session(master, settings.device, self.counters, self.log, serve)

    async def _server(
        self, settings: SlavePortSettings, nursery: trio.Nursery
    ) -> Callable[[trio.abc.Stream], Awaitable[str]] | None:
        """How a session on this port is served; None when its line does not exist."""
        if settings.serves == "virtual":
            await nursery.start(self.book.follow)
            timeout = settings.activity_timeout_s
            return lambda master: serve_master(master, self.book, self.counters, timeout)
        lines = self.lines.lines
        name = settings.line or next(iter(lines), None)
        if name not in lines:
            self.log(WARNING, f"line {settings.line or '(first)'} does not exist: not serving")
            return None
        bus = lines[name].master
        relayed = TransparentMBusSettings(
            packing=settings.packing,
            packing_interval_ms=settings.packing_interval_ms,
            inactivity_timeout_s=settings.activity_timeout_s,
        )
        return lambda master: relay(master, bus, relayed, self.counters)

    def log(self, level: int, text: str) -> None:
        self.host.log(level, self.name, text)


def slave_port_1(gateway: Any) -> SlavePortService:
    """Entry point ``mbusgw.northbound``: the first slave serial port."""
    return registered(gateway, SlavePortService(gateway, 1))


def slave_port_2(gateway: Any) -> SlavePortService:
    """Entry point ``mbusgw.northbound``: the second slave serial port."""
    return registered(gateway, SlavePortService(gateway, 2))
