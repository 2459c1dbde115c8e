"""The native driver's compiled loop on its own: the trio clock read from a thread, and one job of
a line's protocol over a real socket pair or TCP connection (answer, silence, a line closed under
it, a stop, answers in pieces received without the protocol's Python level)."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import socket
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import trio
import trio.testing

from mbusgw.core.busproto import (
    NO_RESPONSE,
    BusProtocol,
    Done,
    Exchange,
    Failed,
    Outcome,
    Target,
)
from mbusgw.core.frame import req_ud2, snd_nke
from mbusgw.core.records_follow import more_records_follow
from mbusgw.gateway import lineloop
from mbusgw.gateway.bustiming import Timing, resolve

TIMES = resolve(Timing(read_attempts=2), 9600)


class Monotonic:
    """A clock shaped like trio's system clock: ``current_time`` is ``offset`` + the monotonic
    clock."""

    offset = 12345.0

    def current_time(self) -> float:
        return self.offset + time.perf_counter()


class Transport:
    """What the loop asks of a transport: here a stream that cannot hold bytes back."""

    def set_receive_threshold(self, count: int) -> bool:
        return False


def dispatch(events: list) -> Done | Failed | None:
    ends = [e for e in events if type(e) in (Done, Failed)]
    return ends[0] if ends else None


@contextmanager
def line() -> Iterator[tuple[socket.socket, socket.socket, int, int]]:
    """The master's end (non-blocking), the meters' end, and a wake pipe."""
    master, meters = socket.socketpair()
    master.setblocking(False)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    try:
        yield master, meters, wake_read, wake_write
    finally:
        master.close()
        meters.close()
        os.close(wake_read)
        os.close(wake_write)


def serve(protocol: BusProtocol, master: socket.socket, wake: int, stopping: bool = False):
    clock = lineloop.LineClock(Monotonic())
    return lineloop.serve(
        protocol, master.fileno(), wake, clock, dispatch, lambda: stopping, Transport(), False
    )


def pinging() -> BusProtocol:
    """A protocol with a ping of address 5 begun."""
    protocol = BusProtocol(more_records_follow)
    protocol.ping(5, TIMES, now=Monotonic().current_time())
    return protocol


def ping_with(
    meter: Callable[[], None], master: socket.socket, wake: int
) -> tuple[BusProtocol, Done | Failed]:
    """A ping served while ``meter`` plays the other end in a thread."""
    responder = threading.Thread(target=meter)
    responder.start()
    protocol = pinging()
    try:
        return protocol, serve(protocol, master, wake)
    finally:
        responder.join()


async def test_the_trio_clock_is_read_in_c_and_agrees() -> None:
    clock = lineloop.LineClock(trio.lowlevel.current_clock())
    assert clock.native
    before = trio.current_time()
    now = clock.now()
    after = trio.current_time()
    assert before <= now <= after


def test_a_test_clock_is_asked() -> None:
    mock = trio.testing.MockClock(autojump_threshold=0)

    async def main() -> None:
        clock = lineloop.LineClock(trio.lowlevel.current_clock())
        assert not clock.native
        start = clock.now()
        assert start == trio.current_time()
        await trio.sleep(5)
        assert clock.now() == start + 5

    trio.run(main, clock=mock)


def test_a_ping_answered_over_a_socket_pair() -> None:
    with line() as (master, meters, wake, _):
        requests = []

        def meter() -> None:
            requests.append(meters.recv(16))
            meters.sendall(b"\xe5")

        protocol, ended = ping_with(meter, master, wake)
        assert requests == [snd_nke(5)]
        assert type(ended) is Done
        exchange = ended.value
        assert type(exchange) is Exchange
        assert exchange.outcome is Outcome.ANSWER
        assert exchange.received == b"\xe5"
        assert exchange.first_byte_at >= exchange.sent_at
        assert not protocol.busy


def test_silence_is_no_answer_after_every_try() -> None:
    with line() as (master, meters, wake, _):
        protocol = pinging()
        ended = serve(protocol, master, wake)
        assert type(ended) is Failed
        assert ended.kind == NO_RESPONSE
        assert ended.attempts == 2
        assert meters.recv(64) == snd_nke(5) * 2  # the request and its one repetition
        assert protocol.stats.silent == 2


def test_stray_bytes_before_a_job_are_counted_and_dropped() -> None:
    with line() as (master, meters, wake, _):
        meters.sendall(b"\x01\x02\x03")
        time.sleep(0.01)  # the bytes are in the master's buffer
        protocol = BusProtocol(more_records_follow)
        lineloop.drain(protocol, master.fileno(), lineloop.LineClock(Monotonic()))
        with pytest.raises(BlockingIOError):
            master.recv(16)  # nothing left
        protocol.ping(5, TIMES, now=Monotonic().current_time())
        ended = serve(protocol, master, wake)
        assert ended.attempts == 2
        assert protocol.stats.stray_bytes == 3


def test_the_other_end_closing_ends_the_job_with_eof() -> None:
    with line() as (master, meters, wake, _):

        def go_away() -> None:
            meters.recv(16)
            meters.shutdown(socket.SHUT_WR)

        closer = threading.Thread(target=go_away)
        closer.start()
        protocol = pinging()
        with pytest.raises(EOFError):
            serve(protocol, master, wake)
        closer.join()
        assert not protocol.busy  # aborted: the next job may start


def test_a_wake_while_stopping_leaves_the_job() -> None:
    with line() as (master, _, wake, wake_write):
        protocol = pinging()
        os.write(wake_write, b"w")
        with pytest.raises(lineloop.Stopped):
            serve(protocol, master, wake, stopping=True)
        assert not protocol.busy
        with pytest.raises(BlockingIOError):
            os.read(wake, 16)  # the loop took the wake-up byte


def test_a_wake_without_a_stop_changes_nothing() -> None:
    with line() as (master, meters, wake, wake_write):

        def meter() -> None:
            meters.recv(16)
            os.write(wake_write, b"w")  # another request came meanwhile
            time.sleep(0.005)
            meters.sendall(b"\xe5")

        _, ended = ping_with(meter, master, wake)
        assert type(ended) is Done
        assert ended.value.outcome is Outcome.ANSWER
        with pytest.raises(BlockingIOError):
            os.read(wake, 16)  # the loop took the wake-up


def rsp_ud(access: int, more: bool) -> bytes:
    """A valid RSP_UD of meter 1 with one record; DIF 0x1F when more records follow."""
    body = bytes([0x08, 1, 0x72]) + bytes.fromhex("78563412 2D2C 01 07") + bytes([access, 0, 0, 0])
    body += bytes.fromhex("0413 2A000000") + (b"\x1f" if more else b"")
    return bytes([0x68, len(body), len(body), 0x68]) + body + bytes([sum(body) & 0xFF, 0x16])


def unread(sock: socket.socket) -> int:
    """Bytes waiting in the socket's receive buffer."""
    count = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    return count[0]


class Counting(BusProtocol):
    """Counts the calls into the protocol's Python level that feed it bytes or the time."""

    def __init__(self) -> None:
        super().__init__(more_records_follow)
        self.calls = 0

    def receive(self, data: bytes, now: float) -> bool:
        self.calls += 1
        return super().receive(data, now)

    def tick(self, now: float) -> None:
        self.calls += 1
        super().tick(now)


class HoldingTransport:
    """A TCP line that holds the rest of a frame back (``SO_RCVLOWAT``), as ``TcpClient``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def set_receive_threshold(self, count: int) -> bool:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, max(1, count))
        return True


@contextmanager
def tcp_line() -> Iterator[tuple[socket.socket, socket.socket]]:
    """The master's end (non-blocking) and the meters' end of a loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        master = socket.create_connection(server.getsockname())
        meters, _ = server.accept()
    master.setblocking(False)
    with master, meters:
        yield master, meters


@pytest.mark.parametrize("kind", ["socket pair", "tcp"])
def test_answers_in_pieces_and_the_gap_need_no_python_level(kind: str) -> None:
    """A two-telegram read whose answers come in pieces, with stray bytes in the gap before
    the second request: the loop sends, counts and receives on C data, and the protocol's
    Python level is entered only with a whole frame (never per chunk or per deadline)."""
    frames = [rsp_ud(1, more=True), rsp_ud(2, more=False)]
    requests: list[bytes] = []
    times = resolve(Timing(read_attempts=2, inter_frame_gap=0.1), 9600)

    def meter(meters: socket.socket, master: socket.socket) -> None:
        for frame in frames:
            requests.append(meters.recv(16))
            time.sleep(0.002)
            for piece in (frame[:1], frame[1:6], frame[6:]):
                meters.sendall(piece)
                time.sleep(0.004)
            while unread(master):
                time.sleep(0.001)
            meters.sendall(b"\x00")  # the frame was taken: this byte is stray, in the gap

    with contextlib.ExitStack() as stack:
        wake_read, wake_write = os.pipe()
        stack.callback(os.close, wake_read)
        stack.callback(os.close, wake_write)
        if kind == "tcp":
            master, meters = stack.enter_context(tcp_line())
            transport = HoldingTransport(master)
        else:
            master, meters, _, _ = stack.enter_context(line())
            transport = Transport()
        protocol = Counting()
        clock = lineloop.LineClock(Monotonic())
        key = ("primary", 1)
        target = Target("primary", key, "primary 1", 1, None, key)
        protocol.read((target,), times, times, now=clock.now(), init=False, limit=2)
        responder = threading.Thread(target=meter, args=(meters, master))
        responder.start()
        try:
            lowat = transport.set_receive_threshold(1)  # asked once, as the driver does
            ended = lineloop.serve(
                protocol,
                master.fileno(),
                wake_read,
                clock,
                dispatch,
                lambda: False,
                transport,
                lowat,
            )
        finally:
            responder.join()
        assert type(ended) is Done
        assert ended.value.frames == tuple(frames) and ended.value.retries == 0
        assert requests == [req_ud2(1, True), req_ud2(1, False)]
        assert protocol.calls == 0
        assert protocol.stats.stray_bytes == 1  # the byte before the second request
        if kind == "tcp":
            assert master.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
