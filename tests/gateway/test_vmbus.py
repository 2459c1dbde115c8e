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
from functools import partial
from pathlib import Path

import meterbus
import serial
import trio
from gatewaykit import kept, seed_settings

from mbusgw.core import decode
from mbusgw.core.frame import manufacturer_code, req_ud2, snd_nke
from mbusgw.core.slave import STATUS_STALE, SlaveIdentity, VirtualMeter, rsp_ud
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.meters import AddressingMode, Meter
from mbusgw.gateway.services.vmbus import VirtualMBusService, load_meter, virtual_mbus_service
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.gateway.slave_settings import VirtualMBusSettings
from mbusgw.gateway.store import ReadingStatus, Store, StoredReading, store_path
from mbusgw.gateway.store.model import HeaderIdentity

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


WIRED = (InterfaceConfig(name="line", kind="simulator", baud=9600, meters=METERS),)


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
async def virtual_gateway(
    data_dir: Path,
    settings: dict | None = None,
    interfaces: tuple[InterfaceConfig, ...] = WIRED,
) -> AsyncIterator[Rig]:
    seed_settings(data_dir, settings or SETTINGS)
    made: list[VirtualMBusService] = []

    async with trio.open_nursery() as nursery:
        clock = ShiftedClock()
        startup = StartupConfig(data_dir, interfaces=interfaces)
        gateway = Gateway(startup, clock=clock, northbound=[kept(made, virtual_mbus_service)])
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


def stored_numbers(gateway: Gateway, served: VirtualMeter) -> list[float]:
    """The store's values of the reading the virtual bus serves."""
    assert served.read_at is not None
    tables = gateway.store.meter_values(served.key, served.read_at, served.read_at + 1)
    return numbers([value for table in tables.values() for value in table.values()])


def secondary_address(identity: SlaveIdentity) -> str:
    """The 16 hex digits pyMeterBus (like libmbus) selects by: ID, then manufacturer, version
    and medium as on the wire."""
    assert identity.manufacturer is not None
    man = manufacturer_code(identity.manufacturer).to_bytes(2, "little").hex()
    return f"{identity.id}{man}{identity.version or 0:02x}{identity.medium or 0:02x}".upper()


def pymeterbus_read(address: tuple[str, int], target: int | str) -> list[object]:
    return pymeterbus_read_port(f"socket://{address[0]}:{address[1]}", target)


def pymeterbus_read_port(url: str, target: int | str) -> list[object]:
    """Every record value of the meter, all telegrams, as pyMeterBus decodes them; ``url`` is
    a serial device or pyserial's ``socket://host:port``."""
    with serial.serial_for_url(url, timeout=2) as port:
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
                served = rig.service.book.directory.meters[meter.key]
                expected = stored_numbers(rig.gateway, served)
                assert expected
                for target in (served.primary, secondary_address(served.identity)):
                    assert target is not None
                    got = await trio.to_thread.run_sync(pymeterbus_read, rig.address, target)
                    assert same_numbers(numbers(got), expected), (meter.key, target, got)

            # a virtual primary address of the gateway's choosing (the meter's own is 1-6)
            key = rig.gateway.meters[0].key
            change = {"slave": {"virtual": {"meters": {key: {"primary": 200}}}}}
            state = rig.gateway.supervisor.states["virtual-mbus"]
            restarts = state.restarts
            await rig.gateway.update_settings(change)
            # the service restarts with the change (on a new port) and loads the meters again
            while state.restarts == restarts or state.state != "running":
                await trio.sleep(0.05)
            while rig.service.book.directory.meters[key].primary != 200:
                await trio.sleep(0.05)
            expected = stored_numbers(rig.gateway, rig.service.book.directory.meters[key])
            got = await trio.to_thread.run_sync(pymeterbus_read, rig.address, 200)
            assert same_numbers(numbers(got), expected)


def mbusgw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MBUSGW, *args], capture_output=True, text=True, timeout=60, check=False)


async def test_wireless_meters_are_served_as_wired_rsp_ud_with_their_decrypted_records(
    tmp_path: Path,
) -> None:
    # two seconds apart: the store times readings in whole seconds, one reading per second
    radio = InterfaceConfig(name="rx", kind="simulated_receiver", meters=3, interval=2.0)
    with trio.fail_after(60):
        async with virtual_gateway(tmp_path, interfaces=(radio,)) as rig:
            assert rig.gateway.meters and all(m.wireless for m in rig.gateway.meters)
            await rig.gateway.writer.flush()
            for meter in rig.gateway.meters:
                while True:  # the meters keep sending: compare with the reading served
                    served = rig.service.book.directory.meters[meter.key]
                    (frame,) = served.frames
                    assert frame[0] == 0x68 and frame[6] == 0x72  # a wired long frame, CI 0x72
                    address = secondary_address(served.identity)
                    got = await trio.to_thread.run_sync(pymeterbus_read, rig.address, address)
                    if rig.service.book.directory.meters[meter.key] is served:
                        break
                expected = stored_numbers(rig.gateway, served)
                assert expected and same_numbers(numbers(got), expected), (meter.key, got)


async def read_telegrams(tcp: str, address: str, *options: str) -> list[dict]:
    """``mbusgw read --json`` of one meter: its telegrams as JSON."""
    args = ("read", "--tcp", tcp, "--address", address, "--json", *options)
    read = await trio.to_thread.run_sync(partial(mbusgw, *args))
    assert read.returncode == 0, read.stderr
    return json.loads(read.stdout)["telegrams"]


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
                telegrams = await read_telegrams(tcp, meter.secondary_address, "--baud", "38400")
                stored = rig.service.book.directory.meters[meter.key].frames
                expected = [decode(frame).to_dict() for frame in stored]
                assert telegrams == as_json(expected)


async def test_a_reading_older_than_the_validity_time_is_not_served_as_current(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        virtual = {**SETTINGS["slave"]["virtual"], "validity_s": 60}
        async with virtual_gateway(tmp_path, {**SETTINGS, "slave": {"virtual": virtual}}) as rig:
            meter = rig.gateway.meters[0]
            assert meter.secondary_address is not None
            rig.clock.offset += timedelta(seconds=61)
            (telegram,) = await read_telegrams(rig.tcp, meter.secondary_address)
            assert telegram["header"]["status"] == STATUS_STALE and telegram["records"] == []
            assert telegram["header"]["id"] == meter.secondary_address


async def request(stream: trio.SocketStream, frame: bytes, answer: int) -> bytes:
    """Send ``frame`` and read ``answer`` bytes back."""
    await stream.send_all(frame)
    got = b""
    while len(got) < answer:
        data = await stream.receive_some(4096)
        assert data, f"closed after {got!r}"
        got += data
    return got


async def test_bad_input_garbage_oversized_silent_flood_and_64_masters(tmp_path: Path) -> None:
    virtual = {**SETTINGS["slave"]["virtual"], "activity_timeout_s": 1}
    with trio.fail_after(60):
        async with virtual_gateway(tmp_path, {**SETTINGS, "slave": {"virtual": virtual}}) as rig:
            counters = rig.service.counters
            meter = rig.service.book.directory.meters[rig.gateway.meters[0].key]
            assert meter.primary is not None
            first = meter.frames[0]

            async def connect() -> trio.SocketStream:
                return await trio.open_tcp_stream(*rig.address)

            # garbage and an oversized frame are dropped; the request after them is answered
            master = await connect()
            oversized = b"\x68\xff\xff\x68" + bytes(300) + b"\x16"
            garbage = bytes(range(256)) * 4
            nke = snd_nke(meter.primary)
            assert await request(master, garbage + oversized + nke, 1) == b"\xe5"
            assert counters.refused_frames >= 2
            # a frame left incomplete is dropped once the line is quiet, not glued to the next
            await master.send_all(req_ud2(meter.primary)[:3])
            await trio.sleep(0.7)
            assert await request(master, req_ud2(meter.primary, fcb=True), len(first)) == first

            # a flood of requests never read back pauses that master only
            flooder = await connect()
            flood = req_ud2(meter.primary, fcb=True) * 20_000
            async with trio.open_nursery() as flooding:
                flooding.start_soon(flooder.send_all, flood)
                other = await connect()
                await request(other, snd_nke(meter.primary), 1)
                got = await request(other, req_ud2(meter.primary, fcb=True), len(first))
                assert got == first
                flooding.cancel_scope.cancel()
            await flooder.aclose()
            await other.aclose()

            # a master that never sends is disconnected after the activity timeout
            assert await master.receive_some(4096) == b""
            await master.aclose()

            # 64 masters at once, each its own state; the 65th is refused
            with trio.fail_after(20):
                while counters.sessions_open:
                    await trio.sleep(0.05)
            masters = [await connect() for _ in range(64)]
            answers: list[bytes] = []

            async def read(stream: trio.SocketStream) -> None:
                await request(stream, snd_nke(meter.primary), 1)
                answers.append(await request(stream, req_ud2(meter.primary, True), len(first)))

            async with trio.open_nursery() as nursery:
                for stream in masters:
                    nursery.start_soon(read, stream)
            assert answers == [first] * 64
            extra = await connect()
            assert await extra.receive_some(4096) == b""
            assert counters.sessions_refused == 1
            for stream in [*masters, extra]:
                await stream.aclose()


def test_a_reading_whose_telegram_did_not_decode_is_not_served(tmp_path: Path) -> None:
    good = rsp_ud(SlaveIdentity("12345678", "ABB", 1, 7), 3, 1, 0, bytes.fromhex("0413e8030000"))
    header = HeaderIdentity("12345678", "ABB", 1, 7, 1, 0)
    meter = Meter("12345678", "flat 1", "12345678", 2400, (AddressingMode.SECONDARY,), 3)
    store = Store.open(store_path(tmp_path))
    try:
        store.put_readings(
            [
                StoredReading(meter.key, 1_000, frames=(good,), header=header),
                StoredReading(
                    meter.key, 2_000, frames=(good[:-3] + b"\x00\x00\x16",),
                    status=ReadingStatus.BAD_FRAME, error="checksum",
                ),
            ]
        )  # fmt: skip
        served = load_meter(store, meter, VirtualMBusSettings(), now=3_000)
    finally:
        store.close()
    assert served.frames == (good,) and served.read_at == 1_000 and served.primary == 3
    assert served.identity == SlaveIdentity("12345678", "ABB", 1, 7)
