"""Transports: a serial port opened by pyserial and driven by trio, TCP with reconnection."""

from __future__ import annotations

import os
import pty
import termios
import tty
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from mbusgw.gateway.settings import ConfigError
from mbusgw.gateway.simulator.serve import socket_pair
from mbusgw.gateway.transport import (
    ReconnectingLine,
    StreamTransport,
    check_baudrate,
    open_line,
    open_serial,
    parse_host_port,
    tcp_line,
)


@pytest.fixture
def pty_pair():
    controller, device = pty.openpty()
    tty.setraw(device)
    yield controller, os.ttyname(device)
    os.close(controller)
    os.close(device)


async def read_exactly(fd: int, count: int) -> bytes:
    data = b""
    while len(data) < count:
        await trio.lowlevel.wait_readable(fd)
        data += os.read(fd, count - len(data))
    return data


async def test_serial_port_on_a_pty_moves_bytes_both_ways(pty_pair) -> None:
    controller, path = pty_pair
    with trio.fail_after(5):
        port = await open_serial(path, 2400)
        async with port:
            assert port.baudrate == 2400
            assert termios.tcgetattr(controller)[5] == termios.B2400
            await port.send_all(b"\x10\x5b\x01\x5c\x16")
            assert await read_exactly(controller, 5) == b"\x10\x5b\x01\x5c\x16"

            async def answer_later() -> None:
                await trio.sleep(0.05)
                os.write(controller, b"\xe5")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_later)
                # an idle line must make the read wait, not look like the end of the stream
                assert await port.receive_some() == b"\xe5"

            port.set_baudrate(300)
            assert port.baudrate == 300
            assert termios.tcgetattr(controller)[5] == termios.B300
            os.write(controller, b"\xe5\xe5")
            assert await port.receive_some() == b"\xe5\xe5"


async def test_opening_a_missing_serial_port_is_an_os_error() -> None:
    with trio.fail_after(5), pytest.raises(OSError):
        await open_serial("/dev/mbusgw-no-such-port", 2400)


@asynccontextmanager
async def converter_line(
    converter: Callable[[trio.SocketStream], Awaitable[None]],
) -> AsyncIterator[ReconnectingLine]:
    """A TCP line to ``converter``, served on a loopback port; five seconds at the most."""
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            serve = partial(trio.serve_tcp, converter, 0, host="127.0.0.1")
            listeners = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            line = tcp_line("127.0.0.1", port, 2400)
            yield line
            await line.aclose()
            nursery.cancel_scope.cancel()


async def test_tcp_line_reconnects_after_the_converter_drops_it() -> None:
    accepted: list[trio.SocketStream] = []

    async def converter(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        async with stream:
            data = await stream.receive_some()
            await stream.send_all(data[::-1])
            # the first connection is dropped after one exchange, the second stays
            if len(accepted) > 1:
                await trio.sleep_forever()

    async with converter_line(converter) as line:
        await line.send_all(b"ab")
        assert await line.receive_some() == b"ba"
        with pytest.raises(trio.BrokenResourceError):
            await line.receive_some()  # the converter closed the connection
        assert not line.is_connected
        await line.send_all(b"cd")  # opens a new connection at once
        assert await line.receive_some() == b"dc"
        assert line.connects == 2


async def test_what_came_between_exchanges_is_read_without_waiting() -> None:
    accepted: list[trio.SocketStream] = []

    async def converter(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        async with stream:
            await stream.receive_some()
            await stream.send_all(b"\x68\x03")
            if len(accepted) == 1:
                return  # the first connection is closed after its answer
            await trio.sleep(0.05)
            await stream.send_all(b"\xe5")  # then a late byte on the second
            await trio.sleep_forever()

    async with converter_line(converter) as line:
        assert await line.receive_waiting() == b""  # not connected: nothing waits
        await line.send_all(b"\x10")
        assert await line.receive_some() == b"\x68\x03"
        while line.is_connected:  # the close is found without waiting for bytes
            try:
                assert await line.receive_waiting() == b""
            except trio.BrokenResourceError as exc:
                assert "closed by the other end" in str(exc)
            await trio.sleep(0.01)
        await line.send_all(b"\x10")  # the next send opens a new connection
        assert await line.receive_some() == b"\x68\x03"
        while not (late := await line.receive_waiting()):
            await trio.sleep(0.01)
        assert late == b"\xe5" and await line.receive_waiting() == b""
        assert line.connects == 2


async def test_a_line_needs_a_stream_with_a_descriptor() -> None:
    left, _right = trio.testing.memory_stream_pair()
    with pytest.raises(TypeError, match="needs a stream with a descriptor"):
        StreamTransport(left, 2400)

    async def opener(baud: int) -> trio.abc.Stream:
        return left

    line = ReconnectingLine(opener, 2400, name="memory", fixed_baud=True)
    with pytest.raises(TypeError, match="MemoryStream|StapledStream"):
        await line.send_all(b"\x10")
    assert not line.is_connected


async def test_tcp_line_backs_off_after_a_failed_connection() -> None:
    # a port that refuses: bind one and close it again
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    line = tcp_line("127.0.0.1", port, 2400, backoff=10.0)
    with trio.fail_after(5):
        with pytest.raises(trio.BrokenResourceError, match="cannot open"):
            await line.send_all(b"x")
        # within the back-off the next attempt fails at once, without trying
        with pytest.raises(trio.BrokenResourceError, match="next attempt in"):
            await line.send_all(b"x")
    assert line.connects == 0
    await line.aclose()


async def test_reconnecting_line_waits_for_a_connection_before_receiving(autojump_clock) -> None:
    left, right = socket_pair()

    async def opener(baud: int) -> trio.abc.Stream:
        return left

    line = ReconnectingLine(opener, 2400, name="memory", fixed_baud=True)
    received: list[bytes] = []

    async def receiver() -> None:
        received.append(await line.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.sleep(1)
        assert received == []  # nothing connected yet: the receiver waits
        await line.send_all(b"\x10")
        assert await right.receive_some() == b"\x10"
        await right.send_all(b"\xe5")
    assert received == [b"\xe5"]
    await line.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await line.send_all(b"x")


def test_baud_rates_and_addresses_are_checked() -> None:
    assert check_baudrate(2400) == 2400
    with pytest.raises(ConfigError, match="not an M-Bus baud rate"):
        check_baudrate(115200)
    assert parse_host_port("10.0.0.5:10001") == ("10.0.0.5", 10001)
    assert parse_host_port("[::1]:10001") == ("::1", 10001)
    for bad in ("10.0.0.5", "host:", ":80", "host:70000", "host:port"):
        with pytest.raises(ConfigError):
            parse_host_port(bad)
    with pytest.raises(ConfigError, match="exactly one"):
        open_line(baud=2400)
    with pytest.raises(ConfigError, match="exactly one"):
        open_line(device="/dev/ttyUSB0", tcp="h:1", baud=2400)
    assert open_line(tcp="127.0.0.1:5000", baud=9600).baudrate == 9600


async def test_a_converter_line_cannot_change_its_rate() -> None:
    left, _right = socket_pair()
    fixed = StreamTransport(left, 2400)
    fixed.set_baudrate(2400)
    with pytest.raises(ConfigError, match="fixed 2400 baud"):
        fixed.set_baudrate(300)
    line = tcp_line("127.0.0.1", 1, 2400)
    with pytest.raises(ConfigError):
        line.set_baudrate(9600)
