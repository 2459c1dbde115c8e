"""Byte streams to M-Bus lines: a serial port (the integrated master or a USB level converter),
a TCP connection to an M-Bus/TCP converter, or any trio stream (the simulator in tests).

Every line is a ``Transport``: a ``trio.abc.Stream`` that also knows its baud rate, because the bus
master times every exchange from it. Serial ports are opened and configured by pyserial (baud,
8 data bits, even parity, 1 stop bit); the bytes then go through a non-blocking file descriptor.
A line's stream must have a descriptor (a socket, a serial port, a pseudo-terminal): the trio bus
driver reads what is already waiting without waiting for more (``receive_waiting``), and the
native driver (``gateway.busthread``) waits on the descriptor itself in its thread
(``descriptor``), leaving opening and reopening to the transport (``ensure_open``, ``broken``).

``ReconnectingLine`` opens its stream on first use and again after the line breaks, with a
doubling back-off between failed attempts. It never blocks a caller on the back-off: an exchange
attempted while the line is down fails at once with ``BrokenResourceError``.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import termios
from abc import abstractmethod
from collections.abc import Awaitable, Callable

import serial
import trio

from mbusgw.gateway.settings import MBUS_BAUD_RATES, ConfigError


def check_baudrate(baud: int) -> int:
    if baud not in MBUS_BAUD_RATES:
        allowed = ", ".join(map(str, MBUS_BAUD_RATES))
        raise ConfigError({"baudrate": f"{baud} is not an M-Bus baud rate ({allowed})"})
    return baud


class Transport(trio.abc.Stream):
    """A byte stream to one M-Bus line, with the line's baud rate."""

    name: str = "line"

    @property
    @abstractmethod
    def baudrate(self) -> int:
        """Bits per second on the wire; one character is 11 bits."""

    def set_baudrate(self, baud: int) -> None:
        """Switch the line to ``baud`` (a scan at several rates); ConfigError if the line
        cannot change it (a TCP converter's rate is set on the converter)."""
        if baud != self.baudrate:
            raise ConfigError({"baudrate": f"{self.name} runs at a fixed {self.baudrate} baud"})

    def send_now(self, data: bytes) -> int:
        """Write what the stream takes without waiting; returns how many bytes that was (0
        where the stream cannot tell). A request of a few bytes then costs no task switch."""
        return 0

    @abstractmethod
    async def receive_waiting(self, max_bytes: int = 4096) -> bytes:
        """What has already arrived, without waiting for more (b"": nothing). A line closed by
        the other end or failed raises BrokenResourceError."""

    def set_receive_threshold(self, count: int) -> bool:
        """Ask the stream not to end ``receive_some`` before ``count`` bytes are waiting (1:
        as soon as there is any), so the rest of a long frame arrives in one piece; a caller
        that stops waiting sets 1 again and then gets what is there. False where the stream
        cannot (the caller then paces itself)."""
        return False

    def descriptor(self) -> int:
        """The open line's non-blocking descriptor, for a driver that does its own I/O in a
        thread (-1: not open)."""
        return -1

    async def ensure_open(self) -> None:
        """Open the line if it is not (BrokenResourceError: it cannot be, now)."""

    async def broken(self, error: BaseException) -> None:
        """A driver doing its own I/O found the line broken: the next ``ensure_open`` opens
        it again where the line can be reopened."""


def _descriptor(stream: trio.abc.Stream) -> int:
    """The non-blocking descriptor under a TCP connection, a socket pair or a serial port (-1:
    none)."""
    if isinstance(stream, trio.SocketStream):
        return stream.socket.fileno()
    if isinstance(stream, trio.lowlevel.FdStream):
        return stream.fileno()
    if isinstance(stream, StreamTransport):
        return stream._direct.fd
    return -1


class _Direct:
    """The descriptor under a stream, for I/O without trio's stream layers: a request of a few
    bytes written at once, a read only once the descriptor is readable (trio's own way tries a
    read first and yields once more, which on an idle line only costs time), a read of what is
    waiting, and the TCP receive low-water mark. Only the task that owns a direction may use it
    for that direction.
    """

    __slots__ = ("_socket", "_threshold", "fd")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.fd = _descriptor(stream)
        if self.fd < 0:
            raise TypeError(
                f"an M-Bus line needs a stream with a descriptor (a socket, a serial port), "
                f"not {type(stream).__name__}"
            )
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._threshold = 1

    def write_now(self, data: bytes) -> int:
        """Bytes written without blocking (0: it would block, or it failed: ``send_all`` then
        says how)."""
        try:
            return os.write(self.fd, data)
        except OSError:
            return 0

    async def receive(self, max_bytes: int | None) -> bytes:
        fd = self.fd
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                return os.read(fd, max_bytes or 65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _receive_error(exc) from exc

    def read_waiting(self, max_bytes: int) -> bytes:
        """What is waiting (b"": nothing); the end of the stream is BrokenResourceError."""
        try:
            data = os.read(self.fd, max_bytes)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise _receive_error(exc) from exc
        if not data:
            raise trio.BrokenResourceError("closed by the other end")
        return data

    def set_threshold(self, count: int) -> bool:
        """SO_RCVLOWAT on a TCP connection: readable (and woken) once ``count`` bytes wait."""
        if self._socket is None:
            return False
        count = max(1, count)
        if count != self._threshold:
            try:
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, count)
            except OSError:
                return False
            self._threshold = count
        return True


def _receive_error(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the stream was closed")
    return trio.BrokenResourceError(f"receiving failed: {exc}")


class StreamTransport(Transport):
    """A trio stream with a descriptor (a TCP connection, a socket pair in tests) at a fixed
    baud rate."""

    def __init__(self, stream: trio.abc.Stream, baudrate: int, name: str = "stream") -> None:
        self._io = stream
        self._direct = _Direct(stream)
        self._baudrate = check_baudrate(baudrate)
        self.name = name

    @property
    def baudrate(self) -> int:
        return self._baudrate

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._io.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._io.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._direct.receive(max_bytes)

    async def receive_waiting(self, max_bytes: int = 4096) -> bytes:
        return self._direct.read_waiting(max_bytes)

    def send_now(self, data: bytes) -> int:
        return self._direct.write_now(data)

    def set_receive_threshold(self, count: int) -> bool:
        return self._direct.set_threshold(count)

    def descriptor(self) -> int:
        return self._direct.fd

    async def aclose(self) -> None:
        await self._io.aclose()


class SerialStream(StreamTransport):
    """An open serial port: pyserial owns the settings, trio does the I/O on a duplicate of its
    descriptor (non-blocking, woken by the kernel, no thread per read)."""

    def __init__(self, port: serial.Serial) -> None:
        self._serial = port
        self._wake_on_first_byte()
        fd_stream = trio.lowlevel.FdStream(os.dup(port.fileno()))
        super().__init__(fd_stream, int(port.baudrate), port.port or "serial")

    def _wake_on_first_byte(self) -> None:
        # pyserial leaves VMIN = 0, with which a read on an idle line returns b"" (end of
        # file, to a stream) instead of "would block"; VMIN = 1 makes the descriptor behave.
        fd = self._serial.fileno()
        attrs = termios.tcgetattr(fd)
        attrs[6][termios.VMIN] = 1
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)

    @property
    def baudrate(self) -> int:
        return int(self._serial.baudrate)

    def set_baudrate(self, baud: int) -> None:
        self._serial.baudrate = check_baudrate(baud)  # pyserial rewrites every setting
        self._wake_on_first_byte()

    async def aclose(self) -> None:
        try:
            await self._io.aclose()
        finally:
            self._serial.close()


def _pyserial(device: str, baud: int) -> serial.Serial:
    return serial.Serial(
        port=device,
        baudrate=baud,
        bytesize=serial.EIGHTBITS,
        parity=serial.PARITY_EVEN,
        stopbits=serial.STOPBITS_ONE,
        timeout=0,
        exclusive=True,
    )


def _open_serial_port(device: str, baud: int) -> serial.Serial:
    try:
        return _pyserial(device, baud)
    except termios.error as exc:
        if exc.args[0] != errno.EINVAL:
            raise OSError(exc.args[0], f"cannot configure {device}: {exc.args[-1]}") from exc
    # Some kernels' pseudo-terminals (which have no parity) refuse a settings change whose only
    # effect would be the parity bit, as when the port is opened a second time. Change an
    # unrelated output flag first, so that pyserial's settings are a real change again.
    fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        attrs = termios.tcgetattr(fd)
        attrs[1] ^= termios.OPOST
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except termios.error as exc:
        raise OSError(exc.args[0], f"cannot configure {device}: {exc.args[-1]}") from exc
    finally:
        os.close(fd)
    try:
        return _pyserial(device, baud)
    except termios.error as exc:
        raise OSError(exc.args[0], f"cannot configure {device}: {exc.args[-1]}") from exc


async def open_serial(device: str, baud: int) -> SerialStream:
    """Open ``device`` at ``baud``, 8E1 (the M-Bus character format)."""
    check_baudrate(baud)
    # Opening a USB adapter can take a moment; keep the other lines running meanwhile.
    port = await trio.to_thread.run_sync(_open_serial_port, device, baud)
    return SerialStream(port)


Opener = Callable[[int], Awaitable[trio.abc.Stream]]


class ReconnectingLine(Transport):
    """A line that (re)opens its stream on demand: after a failure the next attempt waits
    ``backoff`` seconds, doubling up to ``backoff_cap``; a success resets it."""

    def __init__(
        self,
        opener: Opener,
        baudrate: int,
        *,
        name: str,
        fixed_baud: bool,
        connect_timeout: float = 5.0,
        backoff: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self._opener = opener
        self._baudrate = check_baudrate(baudrate)
        self._fixed_baud = fixed_baud
        self.name = name
        self.connect_timeout = connect_timeout
        self._backoff_initial = backoff
        self._backoff_cap = backoff_cap
        self._delay = backoff
        self._retry_at = -math.inf
        self._stream: trio.abc.Stream | None = None
        self._direct: _Direct | None = None  # for the current stream
        self._connected = trio.Event()
        self._lock = trio.Lock()
        self._closed = False
        self.connects = 0
        self.last_error: BaseException | None = None

    @property
    def baudrate(self) -> int:
        return self._baudrate

    @property
    def is_connected(self) -> bool:
        return self._stream is not None

    def set_baudrate(self, baud: int) -> None:
        check_baudrate(baud)
        if self._fixed_baud:
            super().set_baudrate(baud)
            return
        if isinstance(self._stream, Transport):
            self._stream.set_baudrate(baud)
        self._baudrate = baud

    async def connect(self) -> trio.abc.Stream:
        """The open stream, opening it if needed (BrokenResourceError while backing off)."""
        if self._closed:
            raise trio.ClosedResourceError(f"{self.name} was closed")
        if self._stream is not None:
            return self._stream
        async with self._lock:
            if self._stream is not None:
                return self._stream
            now = trio.current_time()
            if now < self._retry_at:
                raise trio.BrokenResourceError(
                    f"{self.name} is down ({self.last_error}); next attempt in "
                    f"{self._retry_at - now:.1f} s"
                )
            try:
                with trio.fail_after(self.connect_timeout):
                    stream = await self._opener(self._baudrate)
            except (OSError, trio.TooSlowError) as exc:
                self.last_error = exc
                self._retry_at = now + self._delay
                self._delay = min(self._delay * 2, self._backoff_cap)
                raise trio.BrokenResourceError(f"cannot open {self.name}: {exc}") from exc
            try:
                direct = _Direct(stream)
            except TypeError:
                await trio.aclose_forcefully(stream)
                raise
            self._stream, self._direct = stream, direct
            self._delay = self._backoff_initial
            self.connects += 1
            self._connected.set()
            return stream

    async def _drop(self, stream: trio.abc.Stream, exc: BaseException | None) -> None:
        if self._stream is not stream:
            return  # another task already dropped it
        self.last_error = exc
        self._stream = self._direct = None
        self._connected = trio.Event()
        self._retry_at = trio.current_time()  # the first reconnection is immediate
        await trio.aclose_forcefully(stream)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        stream = await self.connect()
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            await self._drop(stream, exc)
            raise trio.BrokenResourceError(f"{self.name}: sending failed: {exc}") from exc

    async def wait_send_all_might_not_block(self) -> None:
        stream = await self.connect()
        await stream.wait_send_all_might_not_block()

    def send_now(self, data: bytes) -> int:
        # not connected: send_all connects (or says why it cannot)
        return 0 if self._direct is None else self._direct.write_now(data)

    def set_receive_threshold(self, count: int) -> bool:
        return self._direct is not None and self._direct.set_threshold(count)

    def descriptor(self) -> int:
        return -1 if self._direct is None else self._direct.fd

    async def ensure_open(self) -> None:
        await self.connect()

    async def broken(self, error: BaseException) -> None:
        if self._stream is not None:
            await self._drop(self._stream, error)

    async def receive_waiting(self, max_bytes: int = 4096) -> bytes:
        """What is waiting; nothing while the line is down. A break found here drops the
        connection (the next send opens a new one) and raises BrokenResourceError."""
        stream, direct = self._stream, self._direct
        if stream is None or direct is None:
            return b""
        try:
            return direct.read_waiting(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            await self._drop(stream, exc)
            raise trio.BrokenResourceError(f"{self.name}: {exc}") from exc

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Bytes from the line; while the line is down this waits for the next connection."""
        while True:
            if self._closed:
                raise trio.ClosedResourceError(f"{self.name} was closed")
            stream, direct = self._stream, self._direct
            if stream is None or direct is None:
                await self._connected.wait()
                continue
            try:
                data = await direct.receive(max_bytes)
            except trio.ClosedResourceError:
                continue  # dropped by a sender meanwhile; wait for the next connection
            except (trio.BrokenResourceError, OSError) as exc:
                await self._drop(stream, exc)
                raise trio.BrokenResourceError(f"{self.name}: receiving failed: {exc}") from exc
            if not data:
                error = trio.BrokenResourceError(f"{self.name}: closed by the other end")
                await self._drop(stream, error)
                raise error
            return data

    async def aclose(self) -> None:
        self._closed = True
        stream, self._stream, self._direct = self._stream, None, None
        self._connected.set()  # wake a waiting receiver so it sees the close
        if stream is not None:
            await trio.aclose_forcefully(stream)


def serial_line(device: str, baud: int, **options: float) -> ReconnectingLine:
    """A serial port that is reopened after it fails (a USB adapter unplugged and back)."""

    async def opener(current_baud: int) -> trio.abc.Stream:
        return await open_serial(device, current_baud)

    return ReconnectingLine(opener, baud, name=device, fixed_baud=False, **options)


def tcp_line(host: str, port: int, baud: int, **options: float) -> ReconnectingLine:
    """An M-Bus/TCP converter: raw M-Bus bytes over TCP, reconnected with back-off. ``baud`` is
    the rate the converter is configured for (it sets the bus master's timing)."""

    async def opener(_baud: int) -> trio.abc.Stream:
        return await trio.open_tcp_stream(host, port)

    return ReconnectingLine(opener, baud, name=f"tcp:{host}:{port}", fixed_baud=True, **options)


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError({"tcp": f"{text!r} is not HOST:PORT"})
    return host.strip("[]"), int(port)


def open_line(*, device: str | None = None, tcp: str | None = None, baud: int) -> Transport:
    """The transport for a serial ``device`` or a ``tcp`` converter ``HOST:PORT`` (exactly one)."""
    if (device is None) == (tcp is None):
        raise ConfigError({"line": "give exactly one of a serial device or a TCP HOST:PORT"})
    if device is not None:
        return serial_line(device, baud)
    host, port = parse_host_port(tcp or "")
    return tcp_line(host, port, baud)
