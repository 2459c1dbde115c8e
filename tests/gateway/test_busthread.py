"""Both bus drivers (the native one, an OS thread per line, and the trio task) against the
simulator over TCP and a pty, in real time at 9600 baud: the same requests, results and
errors."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from mbusgw.core import decode
from mbusgw.core.busproto import ProbeKind
from mbusgw.core.frame import req_ud2, snd_nke
from mbusgw.gateway import handback
from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.busrequests import MeterAddress, ReadSettings
from mbusgw.gateway.busthread import ThreadedBusMaster
from mbusgw.gateway.errors import LineDown, LineNoisy, NoResponse
from mbusgw.gateway.simulator import MEDIAN_TEMPLATE, SimLine, make_meter, serve_pty, serve_tcp
from mbusgw.gateway.simulator.serve import socket_pair
from mbusgw.gateway.transport import ReconnectingLine, serial_line, tcp_line

BAUD = 9600


def meters() -> list:
    return [
        make_meter(MEDIAN_TEMPLATE, "11111111", primary=1),
        make_meter("abb_delta", "22222222", primary=2, telegrams=3),
    ]


@asynccontextmanager
async def threaded(
    kind: str, driver: type[BusMaster] = ThreadedBusMaster
) -> AsyncIterator[tuple[BusMaster, SimLine]]:
    line = SimLine(meters(), BAUD)
    async with trio.open_nursery() as nursery:
        if kind == "tcp":
            port = await nursery.start(serve_tcp, line, "127.0.0.1", 0)
            transport = tcp_line("127.0.0.1", port, BAUD)
        else:
            device = await nursery.start(serve_pty, line)
            transport = serial_line(device, BAUD)
        bus = driver(transport)
        await nursery.start(bus.run)
        try:
            yield bus, line
        finally:
            nursery.cancel_scope.cancel()
            await transport.aclose()


DRIVERS = pytest.mark.parametrize("driver", [ThreadedBusMaster, BusMaster], ids=["threads", "trio"])


@DRIVERS
@pytest.mark.parametrize("kind", ["tcp", "pty"])
async def test_reads_probes_and_errors(kind: str, driver: type[BusMaster]) -> None:
    with trio.fail_after(30):
        async with threaded(kind, driver) as (bus, line):
            sent: list[bytes] = []
            telegrams: list[int] = []
            bus.on_exchange = lambda exchange: sent.append(exchange.request)
            single = await bus.read(MeterAddress(primary=1))
            assert decode(single.frames[0]).header.id == "11111111"
            assert (single.attempts, single.retries) == (2, 0)
            multi = await bus.read(MeterAddress(primary=2), on_telegram=telegrams.append)
            assert len(multi.frames) == 3 and multi.complete and multi.retries == 0
            assert telegrams == [1, 2, 3]
            assert sent[:2] == [snd_nke(1), req_ud2(1, True)]
            # back to back: one broadcast SND_NKE, then REQ_UD2 only
            await bus.read(MeterAddress(primary=1), keep_link=True)
            again = await bus.read(MeterAddress(primary=1), keep_link=True)
            assert again.attempts == 1
            line.meters[0].ignore_next = 1
            retried = await bus.read(MeterAddress(primary=1), ReadSettings(init=False))
            assert retried.retries == 1
            with pytest.raises(NoResponse):
                await bus.read(MeterAddress(primary=9))
            assert (await bus.probe_primary(2)).kind is ProbeKind.FOUND
            assert (await bus.probe_primary(9)).kind is ProbeKind.EMPTY
            line.noise = (0.002, 0.01)
            with pytest.raises(LineNoisy):
                await bus.read(MeterAddress(primary=1))
            line.noise = None
            await trio.sleep(0.2)
            assert (await bus.read(MeterAddress(primary=1))).frames
            assert bus.stats.noisy == 1 and bus.stats.answers >= 10


async def test_many_callers_are_served_in_turn_and_stopping_fails_the_rest() -> None:
    line = SimLine(meters(), BAUD)
    results: list[object] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_tcp, line, "127.0.0.1", 0)
            transport = tcp_line("127.0.0.1", port, BAUD)
            bus = ThreadedBusMaster(transport)

            async def reader(primary: int) -> None:
                try:
                    results.append(await bus.read(MeterAddress(primary=primary)))
                except LineDown as exc:
                    results.append(exc)

            with pytest.raises(LineDown, match="not running"):
                await bus.read(MeterAddress(primary=1))
            async with trio.open_nursery() as bus_nursery:
                await bus_nursery.start(bus.run)
                async with trio.open_nursery() as callers:
                    for _ in range(3):
                        for primary in (1, 2):
                            callers.start_soon(reader, primary)
                assert len(results) == 6 and not any(isinstance(r, LineDown) for r in results)
                results.clear()
                for _ in range(4):
                    nursery.start_soon(reader, 2)
                await trio.sleep(0.02)  # one read on the wire, the others queued
                bus_nursery.cancel_scope.cancel()
            await trio.sleep(0.05)
            assert len(results) == 4
            assert all(isinstance(r, LineDown) and "stopped" in str(r) for r in results[-3:])
            # started again (as the supervisor restarts a service), it serves as before
            async with trio.open_nursery() as bus_nursery:
                await bus_nursery.start(bus.run)
                assert (await bus.read(MeterAddress(primary=2))).complete
                bus_nursery.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        await transport.aclose()


@DRIVERS
@pytest.mark.parametrize("kind", ["tcp", "pty"])
async def test_raw_access(kind: str, driver: type[BusMaster]) -> None:
    with trio.fail_after(30):
        async with threaded(kind, driver) as (bus, _):
            order: list[str] = []

            async def scheduled_read() -> None:
                await bus.read(MeterAddress(primary=1))
                order.append("read")

            async with trio.open_nursery() as nursery, bus.raw() as raw:
                nursery.start_soon(scheduled_read)
                await trio.sleep(0.2)
                answer = await raw.send(snd_nke(2))
                assert answer.received == b"\xe5"
                reply = await raw.send(req_ud2(2, True))
                assert decode(reply.frame).header.id == "22222222"
                assert await raw.receive(0.1) == b""
                order.append("raw done")
            assert order == ["raw done", "read"]


@DRIVERS
async def test_a_broken_line_is_line_down_and_reopened(driver: type[BusMaster]) -> None:
    line = SimLine(meters(), BAUD)
    ends: list[trio.SocketStream] = []
    async with trio.open_nursery() as nursery:

        async def opener(_baud: int) -> trio.abc.Stream:
            master_end, line_end = socket_pair()
            ends.append(line_end)
            nursery.start_soon(line.serve, line_end)
            return master_end

        transport = ReconnectingLine(opener, BAUD, name="pair", fixed_baud=True)
        bus = driver(transport)
        with trio.fail_after(30):
            await nursery.start(bus.run)
            assert (await bus.read(MeterAddress(primary=1))).frames
            await ends[-1].aclose()  # the converter goes away while the line is idle
            await trio.sleep(0.05)
            # the next request opens the line again
            assert (await bus.read(MeterAddress(primary=2))).complete
            assert transport.connects == 2

            async def close_soon() -> None:
                await trio.sleep(0.05)
                await ends[-1].aclose()

            # it goes away during an exchange (nobody answers address 9): the caller is told
            nursery.start_soon(close_soon)
            with pytest.raises(LineDown):
                await bus.read(MeterAddress(primary=9))
            assert (await bus.read(MeterAddress(primary=1))).frames
            assert transport.connects == 3
        nursery.cancel_scope.cancel()
    await transport.aclose()


@DRIVERS
async def test_a_callback_that_raises_fails_its_request(driver: type[BusMaster]) -> None:
    def broken_display(count: int) -> None:
        raise RuntimeError("the progress display broke")

    with trio.fail_after(30):
        async with threaded("tcp", driver) as (bus, _):
            with pytest.raises(RuntimeError, match="progress display"):
                await bus.read(MeterAddress(primary=2), on_telegram=broken_display)
            await trio.sleep(0.2)
            assert (await bus.read(MeterAddress(primary=1))).frames


@DRIVERS
async def test_a_round_hands_each_reading_back_as_it_is_read(driver: type[BusMaster]) -> None:
    """A round is one request to the native driver, yet each meter's reading (or error) reaches
    trio as soon as it is read, and a request from another task goes in between two meters."""
    plan = [
        (MeterAddress(primary=1), ReadSettings()),
        (MeterAddress(primary=9), ReadSettings()),  # nobody there
        (MeterAddress(primary=2), ReadSettings()),
        (MeterAddress(primary=1), ReadSettings()),
    ]
    got: list[tuple[int, object]] = []
    pinged: list[int] = []  # readings back when the other task's ping was answered
    with trio.fail_after(30):
        async with threaded("tcp", driver) as (bus, line):
            first_back = trio.Event()

            def on_read(k: int, reading: object) -> None:
                got.append((k, reading))
                first_back.set()

            async def ping_meanwhile() -> None:
                await first_back.wait()
                await bus.ping(2)
                pinged.append(len(got))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ping_meanwhile)
                await bus.read_round(plan, on_read, keep_link=True)
    assert [k for k, _ in got] == [0, 1, 2, 3]
    assert isinstance(got[1][1], NoResponse)
    assert [decode(r.frames[0]).header.id for _, r in got if not isinstance(r, Exception)] == [
        "11111111",
        "22222222",
        "11111111",
    ]
    assert len(got[2][1].frames) == 3  # type: ignore[union-attr]
    assert pinged and pinged[0] < len(plan)  # served before the round was over


@DRIVERS
async def test_a_round_prepares_each_reading_where_it_was_read(driver: type[BusMaster]) -> None:
    """``prepare`` runs in the thread that read the meter (the native driver's line thread),
    and ``on_read`` in trio gets what it returned, in order."""
    plan = [(MeterAddress(primary=p), ReadSettings()) for p in (1, 9, 2)]  # nobody at 9
    prepared_in: list[int] = []
    got: list[tuple[int, tuple[object, ...]]] = []

    def prepare(k: int, reading: object) -> tuple[tuple[object, ...], bool]:
        prepared_in.append(threading.get_ident())
        return ("prepared", k, reading), isinstance(reading, Exception)

    with trio.fail_after(30):
        async with threaded("tcp", driver) as (bus, _):
            await bus.read_round(plan, lambda k, p: got.append((k, p)), prepare=prepare)
    assert [(k, p[:2]) for k, p in got] == [(k, ("prepared", k)) for k in range(3)]
    assert isinstance(got[1][1][2], NoResponse)
    assert len(got[2][1][2].frames) == 3  # type: ignore[attr-defined]
    in_trio = {ident == threading.get_ident() for ident in prepared_in}
    assert in_trio == {driver is BusMaster}


async def test_progress_callbacks_wait_for_the_batch_and_come_before_the_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The native driver hands ``on_telegram``/``on_exchange`` calls back with the next batch
    (the first after a quiet spell at once), never after the request's reply, in order."""
    monkeypatch.setattr(handback, "HAND_BACK_INTERVAL", 60.0)
    telegrams: list[int] = []
    exchanges: list[bytes] = []
    seen_while_reading: set[int] = set()
    with trio.fail_after(30):
        async with threaded("tcp") as (bus, _):
            bus.on_exchange = lambda exchange: exchanges.append(exchange.request)
            done = trio.Event()

            async def read() -> None:
                await bus.read(MeterAddress(primary=2), on_telegram=telegrams.append)
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                while not done.is_set():
                    seen_while_reading.add(len(telegrams))
                    await trio.sleep(0.002)
    assert telegrams == [1, 2, 3] and seen_while_reading <= {0, 1}
    assert exchanges[:2] == [snd_nke(2), req_ud2(2, True)] and len(exchanges) == 4


@DRIVERS
async def test_a_round_whose_callback_fails_ends_with_that_error(driver: type[BusMaster]) -> None:
    async with threaded("tcp", driver) as (bus, _):
        plan = [(MeterAddress(primary=1), ReadSettings())] * 2

        def refuse(k: int, reading: object) -> None:
            raise ValueError(f"refused reading {k}")

        with trio.fail_after(30), pytest.raises(ValueError, match="refused reading 0"):
            await bus.read_round(plan, refuse)
        assert (await bus.read(MeterAddress(primary=1))).frames  # the line serves on


@DRIVERS
@pytest.mark.parametrize("kind", ["tcp", "pty"])
async def test_echo_garbles_and_a_flood(kind: str, driver: type[BusMaster]) -> None:
    """The faults the native loop meets on C data (an echo before the answer, a corrupted or
    overlapping answer, a line flooded without a pause) end as under the trio driver."""
    with trio.fail_after(30):
        async with threaded(kind, driver) as (bus, line):
            line.echo = True
            echoed = await bus.read(MeterAddress(primary=2))
            assert len(echoed.frames) == 3 and echoed.retries == 0
            assert bus.stats.echoes == echoed.attempts
            line.echo = False
            line.meters[0].corrupt_next = 1
            corrupted = await bus.read(MeterAddress(primary=1), ReadSettings(init=False))
            assert corrupted.retries == 1
            line.collide_next = 1
            collided = await bus.read(MeterAddress(primary=1), ReadSettings(init=False))
            assert collided.retries == 1 and bus.stats.garbled == 2
            line.flood = True
            with pytest.raises(LineNoisy):
                await bus.read(MeterAddress(primary=1))
            line.flood = False
            await trio.sleep(0.2)
            assert (await bus.read(MeterAddress(primary=1))).frames
            assert bus.stats.noisy == 1
