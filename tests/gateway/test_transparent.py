"""Transparent M-Bus end to end: a gateway with two simulated lines, one service per line
(packing "M-Bus" on one, "Transparent" on the other); our own ``mbusgw read`` and raw sockets
as the masters. The simulator counts every byte that reaches its wire."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
from gatewaykit import kept, seed_settings
from test_vmbus import request

from mbusgw.core.frame import req_ud2, snd_nke
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.services.transparent import (
    TransparentMBusService,
    transparent_mbus_1,
    transparent_mbus_2,
)
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.gateway.simulator import SimLine

MBUSGW = [sys.executable, "-m", "mbusgw.gateway.cli"]
BAUD = 38400
# The gateway relays an answer once it is complete (docs/slave.md): to a master it is a
# converter whose latency is up to a long frame's time on the wire.
RELAY_LATENCY = ("--latency", "300")
SETTINGS = {
    "reading": {"schedule": "0 0 1 1 *", "read_at_start": False},
    "modbus": {"enabled": False},
    "slave": {
        "transparent_1": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": 0,
            "line": "a",
            "packing": "mbus",
            "packing_interval_ms": 5,
            "inactivity_timeout_s": 2,
        },
        "transparent_2": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": 0,
            "line": "b",
            "packing": "transparent",
            "packing_interval_ms": 5,
            "inactivity_timeout_s": 2,
        },
    },
}


@dataclass
class Rig:
    gateway: Gateway
    services: list[TransparentMBusService]

    def tcp(self, number: int) -> str:
        return f"127.0.0.1:{self.services[number - 1].port}"

    def sim(self, line: str) -> SimLine:
        return self.gateway.simulators[line].line


@asynccontextmanager
async def transparent_gateway(data_dir: Path, reading: dict | None = None) -> AsyncIterator[Rig]:
    seed_settings(data_dir, {**SETTINGS, "reading": reading or SETTINGS["reading"]})
    made: list[TransparentMBusService] = []

    interfaces = (
        InterfaceConfig(name="a", kind="simulator", baud=BAUD, meters=3),
        InterfaceConfig(name="b", kind="simulator", baud=BAUD, meters=2),
    )
    async with trio.open_nursery() as nursery:
        gateway = Gateway(
            StartupConfig(data_dir, interfaces=interfaces),
            northbound=[kept(made, transparent_mbus_1), kept(made, transparent_mbus_2)],
        )
        await nursery.start(gateway.run)
        try:
            yield Rig(gateway, made)
        finally:
            gateway.stop()


def mbusgw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MBUSGW, *args], capture_output=True, text=True, timeout=60, check=False)


def shape(telegram: dict) -> tuple:
    """What stays the same between two reads of a simulated meter (its values move on)."""
    header = telegram["header"]
    return (header["id"], header["manufacturer"], [r["dif_vif"] for r in telegram["records"]])


async def read_json(tcp: str, address: int) -> list[dict]:
    args = ("read", "--tcp", tcp, "--address", str(address), "--baud", str(BAUD), "--json")
    args += RELAY_LATENCY
    done = await trio.to_thread.run_sync(lambda: mbusgw(*args))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["telegrams"]


async def test_mbusgw_read_through_both_services_equals_a_direct_read(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with transparent_gateway(tmp_path) as rig:
            for number, line in ((1, "a"), (2, "b")):
                for meter in [m for m in rig.gateway.meters if m.interface == line]:
                    assert meter.primary_address is not None
                    direct = f"127.0.0.1:{rig.gateway.simulators[line].port}"
                    through = await read_json(rig.tcp(number), meter.primary_address)
                    expected = await read_json(direct, meter.primary_address)
                    assert [shape(t) for t in through] == [shape(t) for t in expected]
            counters = rig.services[0].counters
            assert counters.sessions >= 3 and counters.frames_in > 0 and counters.bytes_out > 0


async def test_garbage_never_reaches_the_line_in_mbus_packing(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with transparent_gateway(tmp_path) as rig:
            meter = next(m for m in rig.gateway.meters if m.interface == "a")
            assert meter.primary_address is not None
            wire = rig.sim("a").stats
            before = wire.bytes_from_master
            master = await trio.open_tcp_stream("127.0.0.1", rig.services[0].port)
            garbage = b"\x68\x05\x05\x68\x01\x02\x03" + bytes(range(0x20, 0x60))
            nke = snd_nke(meter.primary_address)
            assert await request(master, garbage + nke, 1) == b"\xe5"
            assert wire.bytes_from_master - before == len(nke)  # the garbage stayed here
            assert rig.services[0].counters.refused_frames >= 1
            # one master at a time: a second one is accepted and closed at once
            second = await trio.open_tcp_stream("127.0.0.1", rig.services[0].port)
            assert await second.receive_some(4096) == b""
            assert rig.services[0].counters.sessions_refused == 1
            await second.aclose()
            await master.aclose()

            # packing "transparent" passes the same bytes on unchecked
            other = next(m for m in rig.gateway.meters if m.interface == "b")
            assert other.primary_address is not None
            wire_b = rig.sim("b").stats
            before = wire_b.bytes_from_master
            master = await trio.open_tcp_stream("127.0.0.1", rig.services[1].port)
            nke = snd_nke(other.primary_address)
            await master.send_all(garbage)
            await trio.sleep(0.1)  # one packing interval and more: sent on its own
            assert await request(master, nke, 1) == b"\xe5"
            assert wire_b.bytes_from_master - before == len(garbage) + len(nke)
            await master.aclose()


async def test_a_read_during_a_session_waits_until_the_session_times_out(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with transparent_gateway(tmp_path) as rig:
            meter = next(m for m in rig.gateway.meters if m.interface == "a")
            assert meter.primary_address is not None
            master = await trio.open_tcp_stream("127.0.0.1", rig.services[0].port)
            assert await request(master, snd_nke(meter.primary_address), 1) == b"\xe5"
            done = trio.Event()

            async def read() -> None:
                reading = await rig.gateway.read_meter(meter.key)
                assert reading.ok, reading.error
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                requests = rig.sim("a").stats.requests
                await trio.sleep(0.5)  # far longer than a read at 38400 baud takes
                assert not done.is_set() and rig.sim("a").stats.requests == requests
                answer = await request(master, req_ud2(meter.primary_address, fcb=True), 5)
                assert answer[0] == 0x68  # the session still has the line
                await done.wait()  # the master fell silent: the session timed out, the read ran
            assert await master.receive_some(4096) == b""
            counters = rig.services[0].counters
            assert counters.timeouts == 1 and counters.sessions_open == 0
            await master.aclose()


async def test_continuous_mode_pauses_during_a_session_and_resumes_after(tmp_path: Path) -> None:
    with trio.fail_after(60):
        reading = {**SETTINGS["reading"], "continuous": True}
        async with transparent_gateway(tmp_path, reading) as rig:
            meter = next(m for m in rig.gateway.meters if m.interface == "a")
            assert meter.primary_address is not None
            wire = rig.sim("a").stats
            while wire.requests < 10:  # reading back to back
                await trio.sleep(0.05)
            master = await trio.open_tcp_stream("127.0.0.1", rig.services[0].port)
            assert await request(master, snd_nke(meter.primary_address), 1) == b"\xe5"
            held = wire.requests
            await trio.sleep(0.5)  # dozens of reads at 38400 baud, were the line not held
            assert wire.requests == held
            await master.aclose()
            while wire.requests < held + 10:  # given back: continuous mode goes on
                await trio.sleep(0.05)
