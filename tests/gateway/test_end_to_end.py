"""The bus master against the simulator through the real transports: a serial port (pyserial on
a pseudo-terminal) and an M-Bus/TCP converter connection. Real clock, so a fast line rate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from mbusgw.core import decode
from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.busrequests import MeterAddress, ReadSettings
from mbusgw.gateway.errors import LineDown, NoResponse
from mbusgw.gateway.scan import SecondaryScan, scan_line
from mbusgw.gateway.simulator import (
    SimLine,
    make_meter,
    serve_pty,
    serve_tcp,
)
from mbusgw.gateway.transport import serial_line, tcp_line

BAUD = 38400
TRANSPORTS = ["pty", "tcp"]


@asynccontextmanager
async def real_line(kind: str, line: SimLine) -> AsyncIterator[BusMaster]:
    async with trio.open_nursery() as nursery:
        if kind == "pty":
            path = await nursery.start(serve_pty, line)
            transport = serial_line(path, line.baud)
        else:
            port = await nursery.start(serve_tcp, line)
            transport = tcp_line("127.0.0.1", port, line.baud)
        bus = BusMaster(transport)
        await nursery.start(bus.run)
        yield bus
        await transport.aclose()
        nursery.cancel_scope.cancel()


def ids(meters) -> set[str]:
    return {m.identity.id for m in meters}  # simulated meters and found meters alike


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_every_fault_gives_its_outcome(kind: str) -> None:
    multi = make_meter("abb_delta", "10000001", primary=1, telegrams=3)
    lossy = make_meter("GWF-MTKcoder", "10000002", primary=2)
    silent = make_meter("GWF-MTKcoder", "10000003", primary=3)
    noisy = make_meter("els_falcon", "10000004", primary=4)
    silent.silent = True
    line = SimLine([multi, lossy, silent, noisy], BAUD)
    with trio.fail_after(20):
        async with real_line(kind, line) as bus:
            reading = await bus.read(MeterAddress(primary=1))
            assert [decode(f).more_records_follow for f in reading.frames] == [True, True, False]

            lossy.ignore_next = 1  # retry, then success
            reading = await bus.read(MeterAddress(primary=2), ReadSettings(init=False))
            assert reading.attempts == 2

            with pytest.raises(NoResponse) as caught:
                await bus.read(MeterAddress(primary=3))
            assert caught.value.attempts == 3

            noisy.corrupt_next = 1  # a garbled answer: recovery, then success
            reading = await bus.read(MeterAddress(primary=4), ReadSettings(init=False))
            assert reading.attempts == 2 and decode(reading.frames[0]).header.id == "10000004"

            line.collide_next = 1  # a phantom transmitter talks over the answer
            reading = await bus.read(MeterAddress(primary=4), ReadSettings(init=False))
            assert reading.attempts == 2

            line.echo = True  # a converter that echoes every request
            reading = await bus.read(MeterAddress(primary=1))
            assert len(reading.frames) == 3 and reading.complete
            assert bus.stats.echoes == reading.attempts


# Two IDs with hex digits, two sharing their first two digits (they collide under 2FFFFFFF and
# 27FFFFFF), different models and answer delays.
SCAN_METERS = [
    ("EFE_Engelmann-WaterStar", "27182818", None),
    ("kamstrup_382_005", "27A12345", 0.012),
    ("els_falcon", "50306067", 0.004),
    ("landis+gyr_ultraheat_t230", "C3614364", None),
    ("abb_delta", "87915890", 0.030),
]


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_scans_find_every_meter_and_nothing_else(kind: str) -> None:
    meters = [
        make_meter(name, ident, primary=k + 1, answer_delay=delay, answer_jitter=0.001, seed=k)
        for k, (name, ident, delay) in enumerate(SCAN_METERS)
    ]
    with trio.fail_after(60):
        async with real_line(kind, SimLine(meters, BAUD)) as bus:
            primary = await scan_line(bus, "primary", addresses=range(8))
            secondary = await SecondaryScan.start(hex_digits=True).run(bus)
    assert {(f.primary, f.identity.id) for f in primary.found} == {
        (m.primary, m.identity.id) for m in meters
    }
    assert ids(secondary.found) == ids(meters) and secondary.unresolved == []
    assert secondary.probes == 1 + 3 * 15  # the root, its digits, 2…, 27…


async def test_a_scan_at_several_baud_rates_over_a_serial_port() -> None:
    at_2400 = make_meter("GWF-MTKcoder", "20000001", primary=1, baud=2400)
    at_9600 = make_meter("GWF-MTKcoder", "20000002", primary=2, baud=9600)
    any_rate = make_meter("GWF-MTKcoder", "20000003", primary=3)
    line = SimLine([at_2400, at_9600, any_rate], 9600)
    with trio.fail_after(30):
        async with real_line("pty", line) as bus:
            report = await scan_line(bus, "primary", bauds=[9600, 2400], addresses=range(5))
    assert {(f.primary, f.baud) for f in report.found} == {(1, 2400), (2, 9600), (3, 9600)}


async def test_the_tcp_line_comes_back_after_the_converter_restarts() -> None:
    line = SimLine([make_meter("GWF-MTKcoder", "30000001", primary=1)], BAUD)
    with trio.fail_after(20):
        async with trio.open_nursery() as outer:
            converter = trio.CancelScope()

            async def run_converter(port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
                with converter:
                    await serve_tcp(line, "127.0.0.1", port, task_status=task_status)

            port = await outer.start(run_converter, 0)
            transport = tcp_line("127.0.0.1", port, BAUD)
            bus = BusMaster(transport)
            await outer.start(bus.run)
            await bus.read(MeterAddress(primary=1))
            converter.cancel()  # the converter goes away, with the connection
            with pytest.raises(LineDown):
                for _ in range(3):
                    await bus.read(MeterAddress(primary=1))
            converter = trio.CancelScope()
            await outer.start(partial(run_converter, port))
            await trio.sleep(1.0)  # past the back-off after the failed reconnection (0.5 s)
            reading = await bus.read(MeterAddress(primary=1))
            assert decode(reading.frames[0]).header.id == "30000001"
            assert transport.connects == 2
            await transport.aclose()
            outer.cancel_scope.cancel()
