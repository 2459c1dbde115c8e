"""What the protocol's I/O alone costs: the peers of the gateway bench.

The peers read the simulated lines the way continuous mode does, with the same timing rules
(a broadcast SND_NKE per line, then REQ_UD2 to primary addresses 1-64 back to back, the
no-answer bound, the rest of a long frame held back with ``SO_RCVLOWAT``, the inter-frame gap
before the next request), but nothing else: no decoding, no accounting, no snapshot. One peer
waits on trio (one task per line), one in a blocking OS thread per line, and one in a single
OS thread that polls every line (the two shapes a native driver can take). Their CPU per
exchange is the least a program with that waiting model can spend.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import socket
import sys
import threading
import time
from collections.abc import Callable

import trio

from mbusgw.core.busproto import LONG_OVERHEAD, LONG_START
from mbusgw.core.frame import req_ud2, snd_nke
from mbusgw.gateway.bustiming import Timing, resolve

ADDRESSES = range(1, 65)


class Rules:
    """The bus master's default timing for one line at ``baud``."""

    def __init__(self, baud: int) -> None:
        times = resolve(Timing(), baud)
        self.char = times.char
        self.gap = times.gap
        self.no_answer = times.no_answer

    def first_byte_within(self, request: bytes) -> float:
        return len(request) * self.char + self.no_answer

    def frame_length(self, head: bytes) -> int:
        """The length of the answer that starts with ``head`` (a long frame or a single char)."""
        if head[0] == LONG_START and len(head) > 1:
            return head[1] + LONG_OVERHEAD
        return 1


class Tally:
    def __init__(self) -> None:
        self.exchanges = 0
        self.silent = 0
        self.lock = threading.Lock()

    def count(self, answered: bool) -> None:
        with self.lock:
            self.exchanges += 1
            self.silent += not answered


def cpu_seconds() -> float:
    """CPU time of this process so far, user and kernel, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _result(tally: Tally, start: tuple[int, int, float, float], wall_end: float) -> dict:
    exchanges_before, silent_before, cpu_before, wall_before = start
    cpu = cpu_seconds() - cpu_before
    wall = wall_end - wall_before
    exchanges = tally.exchanges - exchanges_before
    return {
        "seconds": round(wall, 1),
        "exchanges": exchanges,
        "silent": tally.silent - silent_before,
        "cpu_percent": round(100 * cpu / wall, 3),
        "cpu_ms_per_exchange": round(1000 * cpu / max(exchanges, 1), 3),
    }


# ---------------------------------------------------------------------- trio


async def _trio_line(port: int, rules: Rules, tally: Tally) -> None:
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    fd = sock.fileno()
    fcb: dict[int, bool] = {}

    async def exchange(request: bytes) -> bool:
        os.write(fd, request)  # non-blocking, as the gateway writes a request
        got = b""
        with trio.move_on_after(rules.first_byte_within(request)):
            await trio.lowlevel.wait_readable(fd)
            got = os.read(fd, 4096)
        if got:
            length = rules.frame_length(got)
            with trio.move_on_after((length - len(got)) * rules.char + 0.5):
                while len(got) < length:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, length - len(got))
                    await trio.lowlevel.wait_readable(fd)
                    got += os.read(fd, 4096)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        await trio.sleep(rules.gap)
        return bool(got)

    with sock:
        await exchange(snd_nke(0xFF))
        while True:
            for address in ADDRESSES:
                fcb[address] = not fcb.get(address, False)
                tally.count(await exchange(req_ud2(address, fcb[address])))


async def _trio_peer(ports: list[int], baud: int, seconds: float, warmup: float) -> dict:
    rules, tally = Rules(baud), Tally()
    async with trio.open_nursery() as nursery:
        for port in ports:
            nursery.start_soon(_trio_line, port, rules, tally)
        await trio.sleep(warmup)
        start = (tally.exchanges, tally.silent, cpu_seconds(), time.monotonic())
        await trio.sleep(seconds)
        result = _result(tally, start, time.monotonic())
        nursery.cancel_scope.cancel()
    return result


def trio_peer(ports: list[int], baud: int, seconds: float, warmup: float) -> dict:
    return trio.run(_trio_peer, ports, baud, seconds, warmup)


# ---------------------------------------------------------------------- threads


def _thread_line(port: int, rules: Rules, tally: Tally, running: Callable[[], bool]) -> None:
    fcb: dict[int, bool] = {}
    with socket.create_connection(("127.0.0.1", port)) as sock:

        def exchange(request: bytes) -> bool:
            sock.sendall(request)
            sock.settimeout(rules.first_byte_within(request))
            try:
                got = sock.recv(4096)
            except TimeoutError:
                got = b""
            if got:
                length = rules.frame_length(got)
                sock.settimeout((length - len(got)) * rules.char + 0.5)
                try:
                    while len(got) < length:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, length - len(got))
                        got += sock.recv(4096)
                except TimeoutError:
                    pass
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            time.sleep(rules.gap)
            return bool(got)

        exchange(snd_nke(0xFF))
        while running():
            for address in ADDRESSES:
                if not running():
                    break
                fcb[address] = not fcb.get(address, False)
                tally.count(exchange(req_ud2(address, fcb[address])))


def _measure_threads(
    targets: list[tuple[Callable[..., None], tuple]],
    baud: int,
    begin: Callable[[], None],
    end: Callable[[], None],
) -> dict:
    """Start a thread per ``(target, args)``, each called with ``args``, the rules, the tally
    and whether to go on; measure from when ``begin()`` returns to when ``end()`` returns;
    stop them."""
    rules, tally = Rules(baud), Tally()
    stop = threading.Event()
    threads = [
        threading.Thread(target=target, args=(*args, rules, tally, lambda: not stop.is_set()))
        for target, args in targets
    ]
    for thread in threads:
        thread.start()
    try:
        begin()
        start = (tally.exchanges, tally.silent, cpu_seconds(), time.monotonic())
        end()
        result = _result(tally, start, time.monotonic())
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    return result


def _after(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)


def thread_peer(ports: list[int], baud: int, seconds: float, warmup: float) -> dict:
    """A blocking OS thread per line."""
    return _measure_threads(
        [(_thread_line, (port,)) for port in ports], baud, _after(warmup), _after(seconds)
    )


# ---------------------------------------------------------------------- one thread, all lines


class _PolledLine:
    """One line of the one-thread peer: its exchange as states instead of blocking calls."""

    def __init__(self, sock: socket.socket, rules: Rules) -> None:
        self.sock = sock
        self.rules = rules
        self.fcb: dict[int, bool] = {}
        self.addresses = iter(())
        self.got = b""
        self.holding = False  # SO_RCVLOWAT holds the rest of a frame back
        self.deadline = 0.0
        self.state = "gap"  # gap → answer → gap ...
        self.request = snd_nke(0xFF)

    def send(self, now: float) -> None:
        self.sock.send(self.request)
        self.got = b""
        self.state = "answer"
        self.deadline = now + self.rules.first_byte_within(self.request)

    def next_request(self) -> None:
        address = next(self.addresses, None)
        if address is None:
            self.addresses = iter(ADDRESSES)
            address = next(self.addresses)
        self.fcb[address] = not self.fcb.get(address, False)
        self.request = req_ud2(address, self.fcb[address])

    def received(self, now: float) -> bool:
        """Bytes came; True once the answer is complete."""
        try:
            self.got += self.sock.recv(4096)
        except BlockingIOError:
            return False
        if self.got[0] == LONG_START and len(self.got) < 2:
            return False  # its length comes with the next byte
        length = self.rules.frame_length(self.got)
        if len(self.got) >= length:
            return True
        if not self.holding:
            self.deadline = now + (length - len(self.got)) * self.rules.char + 0.5
            self.holding = True
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, length - len(self.got))
        return False

    def end(self, now: float, tally: Tally) -> None:
        if self.holding:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            self.holding = False
        tally.count(bool(self.got))
        self.state = "gap"
        self.deadline = now + self.rules.gap
        self.next_request()


def _poll_lines(ports: list[int], rules: Rules, tally: Tally, running: Callable[[], bool]) -> None:
    lines = [_PolledLine(socket.create_connection(("127.0.0.1", p)), rules) for p in ports]
    by_fd = {line.sock.fileno(): line for line in lines}
    poller = select.poll()
    for line in lines:
        line.sock.setblocking(False)
        poller.register(line.sock, select.POLLIN)
    try:
        while running():
            timeout = max(0.0, min(line.deadline for line in lines) - time.monotonic())
            for fd, _ in poller.poll(timeout * 1000):
                line = by_fd[fd]
                if line.state != "answer":
                    with contextlib.suppress(BlockingIOError):
                        line.sock.recv(4096)  # stray: dropped
                elif line.received(time.monotonic()):
                    line.end(time.monotonic(), tally)
            now = time.monotonic()
            for line in lines:
                if now >= line.deadline:
                    if line.state == "gap":
                        line.send(now)
                    else:
                        line.end(now, tally)
    finally:
        for line in lines:
            line.sock.close()


def poll_peer(ports: list[int], baud: int, seconds: float, warmup: float) -> dict:
    """One OS thread polls every line (the alternative to a thread per line)."""
    return _measure_threads([(_poll_lines, (ports,))], baud, _after(warmup), _after(seconds))


# ---------------------------------------------------------------------- beside the gateway


def _wait_for(word: str) -> None:
    for line in sys.stdin:
        if line.strip() == word:
            return
    raise SystemExit(f"io_floor: stdin ended before {word!r}")


def main(argv: list[str]) -> None:
    """The blocking-thread peer in a process of its own, on the simulated lines ``PORT...``,
    measured from the line ``begin`` on its stdin to the line ``end``; prints its result as
    JSON. The gateway bench runs it beside the gateway, over the same seconds."""
    parser = argparse.ArgumentParser(prog="python -m bench.io_floor")
    parser.add_argument("--baud", type=int, required=True)
    parser.add_argument("ports", type=int, nargs="+", metavar="PORT")
    args = parser.parse_args(argv)
    targets = [(_thread_line, (port,)) for port in args.ports]
    result = _measure_threads(
        targets, args.baud, lambda: _wait_for("begin"), lambda: _wait_for("end")
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
