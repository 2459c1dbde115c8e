"""Serving a simulated line the way real lines are reached: as an M-Bus/TCP converter (raw bytes
over TCP), as a serial device (a pseudo-terminal whose other end is the line), or on one end of a
socket pair (a bus master and its simulated line in one process, on the mock clock).

On a pty the master's serial settings are real: the simulator reads the baud rate the master set
with termios before each request, so a scan at several baud rates works as on a physical port
(meters with a fixed rate answer only at theirs).
"""

from __future__ import annotations

import contextlib
import os
import pty
import termios
import tty
from collections.abc import AsyncIterator
from functools import partial

import trio

from mbusgw.gateway.simulator.line import SimLine
from mbusgw.gateway.transport import MBUS_BAUD_RATES

_SPEEDS = {getattr(termios, f"B{rate}"): rate for rate in MBUS_BAUD_RATES}


def pty_baudrate(fd: int) -> int | None:
    """The M-Bus baud rate a terminal is set to (None for other rates)."""
    return _SPEEDS.get(termios.tcgetattr(fd)[5])


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """Two connected streams: the master's end and the line's end (``SimLine.serve``)."""
    master_end, line_end = trio.socket.socketpair()
    return trio.SocketStream(master_end), trio.SocketStream(line_end)


async def serve_tcp(
    line: SimLine,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``line`` as an M-Bus/TCP converter; reports the bound port when ready."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    task_status.started(bound)
    await trio.serve_listeners(line.serve, listeners)


async def serve_pty(
    line: SimLine, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``line`` on a new pseudo-terminal; reports the device path (``/dev/pts/N``) to
    open as a serial port when ready."""
    controller, device = pty.openpty()
    try:
        # Raw from the start, and our own descriptor keeps the device alive while the master
        # closes and reopens it (otherwise the controller side would read EIO).
        tty.setraw(device)
        path = os.ttyname(device)
        stream = trio.lowlevel.FdStream(controller)
        controller = -1  # owned by the stream now
        async with stream:
            task_status.started(path)
            await line.serve(stream, baud_source=partial(pty_baudrate, device))
    finally:
        os.close(device)
        if controller >= 0:
            os.close(controller)


@contextlib.asynccontextmanager
async def open_pty(line: SimLine) -> AsyncIterator[str]:
    """``async with open_pty(line) as path``: the line on a pty for as long as the block runs."""
    async with trio.open_nursery() as nursery:
        path = await nursery.start(serve_pty, line)
        try:
            yield path
        finally:
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def open_tcp(line: SimLine, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """``async with open_tcp(line) as port``: the line as a converter on a free loopback port."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_tcp, line, host)
        try:
            yield port
        finally:
            nursery.cancel_scope.cancel()
