"""Trio streams for receivers: a serial port (pyserial sets the line up, trio does the I/O on
its file descriptor, so no thread blocks per byte), a TCP connection, and stdin."""

from __future__ import annotations

import os
import termios

import serial
import trio


class SerialStream(trio.abc.Stream):
    """A configured serial port as a trio stream."""

    def __init__(self, port: serial.Serial) -> None:
        self._port = port
        self._fd_stream = trio.lowlevel.FdStream(os.dup(port.fileno()))

    async def send_all(self, data: bytes) -> None:
        await self._fd_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._fd_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self._fd_stream.receive_some(max_bytes)
        except OSError as error:  # a pty whose other side closed reads EIO
            raise trio.BrokenResourceError(f"serial line failed: {error}") from error

    async def aclose(self) -> None:
        await self._fd_stream.aclose()
        self._port.close()


async def open_serial(path: str, baudrate: int) -> SerialStream:
    """Open ``path`` 8N1 at ``baudrate`` without flow control."""
    port = await trio.to_thread.run_sync(
        lambda: serial.Serial(path, baudrate, timeout=0, exclusive=True)
    )
    # pyserial leaves VMIN at 0, so a read without data returns no bytes, which a stream takes
    # for its end; with VMIN 1 such a read "would block" and trio waits for the data.
    attributes = termios.tcgetattr(port.fileno())
    attributes[6][termios.VMIN] = 1
    attributes[6][termios.VTIME] = 0
    termios.tcsetattr(port.fileno(), termios.TCSANOW, attributes)
    return SerialStream(port)


def serial_opener(path: str, baudrate: int):
    async def open_stream() -> trio.abc.Stream:
        return await open_serial(path, baudrate)

    return open_stream


def tcp_opener(host: str, port: int):
    async def open_stream() -> trio.abc.Stream:
        return await trio.open_tcp_stream(host, port)

    return open_stream


def stdin_opener():
    async def open_stream() -> trio.abc.Stream:
        return trio.lowlevel.FdStream(os.dup(0))

    return open_stream
