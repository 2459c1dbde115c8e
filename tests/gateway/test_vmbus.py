"""Virtual M-Bus end to end: a gateway reads simulated lines into its store, and masters that
are not the gateway read the installed meters back over TCP: ``pyMeterBus`` (an independent
implementation from PyPI), and our own ``mbusgw scan`` and ``mbusgw read`` as separate
processes. Bad input: garbage, oversized frames, a silent master, a flood, 64 masters."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import meterbus
import serial
import trio
from gatewaykit import seed_settings

from mbusgw.core import decode
from mbusgw.core.frame import manufacturer_code, req_ud2
from mbusgw.core.slave import STATUS_STALE, SlaveIdentity
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.services.vmbus import VirtualMBusService, virtual_mbus_service
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig

MBUSGW = [sys.executable, "-m", "mbusgw.gateway.cli"]
METERS = 6  # the default mix: multi-telegram meters, and one ID with a hex digit
SETTINGS = {
    "reading": {"schedule": "0 0 1 1 *", "read_at_start": False},
    "modbus": {"enabled": False},
    "slave": {
        "virtual": {"enabled": True, "host": "127.0.0.1", "port": 0, "activity_timeout_s": 5}
    },
}


class ShiftedClock:
    """The system's time, moved on by ``offset`` when a test ages the stored readings."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def as_json(value: object) -> object:
    return json.loads(json.dumps(value, default=str))


@dataclass
class Rig:
    gateway: Gateway
    service: VirtualMBusService
    clock: ShiftedClock

    @property
    def address(self) -> tuple[str, int]:
        assert self.service.port is not None
        return ("127.0.0.1", self.service.port)

    @property
    def tcp(self) -> str:
        return "{}:{}".format(*self.address)

    async def wait_served(self) -> None:
        """Until the virtual bus has every installed meter's stored reading."""
        keys = {meter.key for meter in self.gateway.meters}
        while True:
            served = self.service.book.directory.meters
            if set(served) == keys and all(m.frames for m in served.values()):
                return
            await trio.sleep(0.05)


@asynccontextmanager
async def virtual_gateway(data_dir: Path, settings: dict | None = None) -> AsyncIterator[Rig]:
    seed_settings(data_dir, settings or SETTINGS)
    made: list[VirtualMBusService] = []

    def factory(gateway: Gateway) -> VirtualMBusService:
        made.append(virtual_mbus_service(gateway))
        return made[-1]

    interfaces = (InterfaceConfig(name="line", kind="simulator", baud=9600, meters=METERS),)
    async with trio.open_nursery() as nursery:
        clock = ShiftedClock()
        startup = StartupConfig(data_dir, interfaces=interfaces)
        gateway = Gateway(startup, clock=clock, northbound=[factory])
        await nursery.start(gateway.run)
        result = await gateway.read_all()
        assert result.failed == []
        rig = Rig(gateway, made[0], clock)
        await rig.wait_served()
        try:
            yield rig
        finally:
            gateway.stop()


def numbers(values: list[object]) -> list[float]:
    """The numeric values, in order of size (pyMeterBus scales in binary floating point)."""
    return sorted(float(v) for v in values if isinstance(v, int | float | Decimal))


def same_numbers(got: list[float], expected: list[float]) -> bool:
    return len(got) == len(expected) and all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(got, expected, strict=True)
    )


def stored_numbers(gateway: Gateway, key: str) -> list[float]:
    return numbers(gateway.store.latest([key]).values())


def secondary_address(identity: SlaveIdentity) -> str:
    """The 16 hex digits pyMeterBus (like libmbus) selects by: ID, then manufacturer, version
    and medium as on the wire."""
    assert identity.manufacturer is not None
    man = manufacturer_code(identity.manufacturer).to_bytes(2, "little").hex()
    return f"{identity.id}{man}{identity.version or 0:02x}{identity.medium or 0:02x}".upper()


def pymeterbus_read(address: tuple[str, int], target: int | str) -> list[object]:
    """Every record value of the meter, all telegrams, as pyMeterBus decodes them."""
    with serial.serial_for_url(f"socket://{address[0]}:{address[1]}", timeout=2) as port:
        if isinstance(target, str):
            meterbus.send_select_frame(port, target)
            assert isinstance(meterbus.load(meterbus.recv_frame(port, 1)), meterbus.TelegramACK)
            target = 0xFD
        else:
            meterbus.send_ping_frame(port, target)
            assert isinstance(meterbus.load(meterbus.recv_frame(port, 1)), meterbus.TelegramACK)
        values: list[object] = []
        fcb = True
        while True:
            port.write(req_ud2(target, fcb=fcb))
            fcb = not fcb
            telegram = meterbus.load(meterbus.recv_frame(port))
            values += [record.value for record in telegram.records]
            if not telegram.more_records_follow:
                return values


async def test_pymeterbus_reads_every_meter_by_primary_and_secondary_address(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with virtual_gateway(tmp_path) as rig:
            for meter in rig.gateway.meters:
                expected = stored_numbers(rig.gateway, meter.key)
                assert expected
                served = rig.service.book.directory.meters[meter.key]
                for target in (served.primary, secondary_address(served.identity)):
                    assert target is not None
                    got = await trio.to_thread.run_sync(pymeterbus_read, rig.address, target)
                    assert same_numbers(numbers(got), expected), (meter.key, target, got)


def mbusgw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MBUSGW, *args], capture_output=True, text=True, timeout=60, check=False)


async def test_our_scan_and_read_find_and_read_every_meter(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with virtual_gateway(tmp_path) as rig:
            tcp = rig.tcp
            fast = ("--baud", "38400", "--response-timeout", "20", "--latency", "0")
            scan = await trio.to_thread.run_sync(
                mbusgw, "scan", "--tcp", tcp, "--mode", "secondary", "--hex", "--json", *fast
            )
            assert scan.returncode == 0, scan.stderr
            found = {m["id"] for m in json.loads(scan.stdout)}
            installed = {m.secondary_address for m in rig.gateway.meters}
            assert found == installed
            assert any(not ident.isdigit() for ident in found)  # a hex ID was found too
            for meter in rig.gateway.meters:
                assert meter.secondary_address is not None
                read = await trio.to_thread.run_sync(
                    mbusgw,
                    "read",
                    "--tcp",
                    tcp,
                    "--address",
                    meter.secondary_address,
                    "--json",
                    "--baud",
                    "38400",
                )
                assert read.returncode == 0, read.stderr
                stored = rig.service.book.directory.meters[meter.key].frames
                expected = [decode(frame).to_dict() for frame in stored]
                assert json.loads(read.stdout)["telegrams"] == as_json(expected)


async def test_a_reading_older_than_the_validity_time_is_not_served_as_current(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        virtual = {**SETTINGS["slave"]["virtual"], "validity_s": 60}
        async with virtual_gateway(tmp_path, {**SETTINGS, "slave": {"virtual": virtual}}) as rig:
            meter = rig.gateway.meters[0]
            assert meter.secondary_address is not None
            rig.clock.offset += timedelta(seconds=61)
            tcp = rig.tcp
            read = await trio.to_thread.run_sync(
                mbusgw,
                "read",
                "--tcp",
                tcp,
                "--address",
                meter.secondary_address,
                "--json",
            )
            assert read.returncode == 0, read.stderr
            (telegram,) = json.loads(read.stdout)["telegrams"]
            assert telegram["header"]["status"] == STATUS_STALE and telegram["records"] == []
            assert telegram["header"]["id"] == meter.secondary_address
