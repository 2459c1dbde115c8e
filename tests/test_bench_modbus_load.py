"""The bench's C Modbus load generator: it compiles, loads a real server without errors,
saturating or paced, and counts every answer it must not accept (wrong transaction id,
function or byte count)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from mbusgw.gateway.clock import SystemClock
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.meters import AddressingMode, Meter
from mbusgw.gateway.services.modbus import ModbusService
from mbusgw.gateway.services.modbus_source import LiveSnapshotSource
from mbusgw.gateway.settings import ModbusSettings

CLIENTS = 3
REQUEST = struct.Struct(">HHHBBHH")


@pytest.fixture(scope="module")
def load(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # imported here, as the bench smoke test does: the bench package is importable only from
    # the checkout's root, and the property run collects this module from tests/
    from bench.bench_modbus import compile_load

    return compile_load(str(tmp_path_factory.mktemp("load")))


@pytest.mark.parametrize(
    ("depth", "rate"),
    [(2, 0.0), (1, 50.0)],  # saturated with two requests in flight; paced at 50/s per client
)
async def test_it_loads_the_gateway_without_errors(load: Path, depth: int, rate: float) -> None:
    meters = [
        Meter(f"{i:08d}", f"meter {i}", f"{i:08d}", 2400, (AddressingMode.SECONDARY,))
        for i in range(1, CLIENTS + 1)
    ]
    clock = SystemClock()
    source = LiveSnapshotSource(LiveSnapshot(), lambda: meters, clock)
    settings = ModbusSettings(host="127.0.0.1", port=0)
    service = ModbusService(lambda: settings, lambda: source, clock)
    seconds = 0.3
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            assert service.address is not None
            port = service.address[1]
            command = [str(load), str(port), str(CLIENTS), str(seconds), str(depth), str(rate)]
            process = await trio.run_process(command, capture_stdout=True)
            served = service.stats.requests
            nursery.cancel_scope.cancel()
    result = json.loads(process.stdout)
    assert result["errors"] == 0
    assert result["requests"] == served > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    if rate:  # a paced client never asks before its turn
        assert result["requests"] <= CLIENTS * (seconds * rate + 1)


def wrong_tid(tid: int, function: int) -> bytes:
    return struct.pack(">HHHBBB", tid + 1, 0, 253, 1, function, 250) + bytes(250)


def wrong_function(tid: int, function: int) -> bytes:
    return struct.pack(">HHHBBB", tid, 0, 253, 1, 4, 250) + bytes(250)


def short_answer(tid: int, function: int) -> bytes:
    return struct.pack(">HHHBBB", tid, 0, 5, 1, function, 2) + bytes(2)


def right(tid: int, function: int) -> bytes:
    return struct.pack(">HHHBBB", tid, 0, 253, 1, function, 250) + bytes(250)


async def serve(answer: Callable[[int, int], bytes], task_status=trio.TASK_STATUS_IGNORED):
    """A server that answers every request with ``answer(tid, function)``."""

    async def connection(stream: trio.SocketStream) -> None:
        buffer = b""
        async for data in stream:
            buffer += data
            while len(buffer) >= REQUEST.size:
                tid, _, _, _, function, _, _ = REQUEST.unpack_from(buffer)
                buffer = buffer[REQUEST.size :]
                await stream.send_all(answer(tid, function))

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    await trio.serve_listeners(connection, listeners, task_status=task_status)


@pytest.mark.parametrize("answer", [wrong_tid, wrong_function, short_answer, right])
async def test_every_answer_is_checked(load: Path, answer: Callable[[int, int], bytes]) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(serve, answer)
            port = listeners[0].socket.getsockname()[1]
            command = [str(load), str(port), str(CLIENTS), "0.2", "4"]
            process = await trio.run_process(command, capture_stdout=True)
            nursery.cancel_scope.cancel()
    result = json.loads(process.stdout)
    assert result["requests"] + result["errors"] > 0
    if answer is right:
        assert result["errors"] == 0
    else:  # every answer was counted as an error, none as a request
        assert result["requests"] == 0


@pytest.mark.parametrize(
    "arguments",
    [
        ["0", "1", "1"],
        ["3", "1", "0"],
        ["3", "0", "1"],
        ["3", "1", "2", "40"],
        ["3", "1", "1", "-1"],
    ],
)
async def test_bad_arguments_are_refused(load: Path, arguments: list[str]) -> None:
    # no clients, no requests in flight, no time, paced with two in flight, a negative rate
    process = await trio.run_process([str(load), "1502", *arguments], check=False)
    assert process.returncode == 2
