"""The gateway's Modbus server end to end: simulated lines at 9600 baud, the real store, the
supervisor. Without continuous read mode the map serves the latest stored values: they follow
each stored reading and survive a restart, with their age; a pymodbus client and Debian's
``mbpoll`` both read them and they match the store."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
import trio
from modbus_rig import field, mbpoll
from pymodbus.client import ModbusTcpClient
from test_gateway import run_gateway, seed_settings

from mbusgw.core.units import ValueKind
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.modbus_encoding import DataType, decode_registers
from mbusgw.gateway.services.modbus_map import (
    BLOCK_SIZE,
    DEVICE_FIELDS,
    HEADER_SIZE,
    METER_FIELDS,
    SLOT_SIZE,
)
from mbusgw.gateway.services.modbus_source import MeterState, SourceKind
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.gateway.store import ReadingStatus

METERS = 3
SETTINGS = {
    "reading": {"schedule": "0 0 1 1 *", "read_at_start": False},
    "modbus": {"host": "127.0.0.1", "port": 0, "data_type": "float64"},
}
NUMERIC = (ValueKind.DECIMAL, ValueKind.REAL, ValueKind.NONE, ValueKind.BCD_ERROR)
SECONDS = (ValueKind.DATE, ValueKind.DATETIME, ValueKind.TIME)


async def read_blocks(port: int, blocks: list[int]) -> list[list[int]]:
    """Whole 125-register blocks of the gateway view, by a pymodbus client."""

    def run() -> list[list[int]]:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
        assert client.connect()
        try:
            out = []
            for block in blocks:
                response = client.read_holding_registers(block * BLOCK_SIZE, count=125, device_id=1)
                assert not response.isError(), response
                out.append(response.registers)
            return out
        finally:
            client.close()

    return await trio.to_thread.run_sync(run)


def port_of(gateway: Gateway) -> int:
    assert gateway.modbus is not None and gateway.modbus.address is not None
    return gateway.modbus.address[1]


def seconds(value: object) -> int:
    if isinstance(value, datetime):
        return int(value.replace(tzinfo=UTC).timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    assert isinstance(value, time)
    return value.hour * 3600 + value.minute * 60 + value.second


def newest_reading(gateway: Gateway, key: str) -> tuple[int, list[tuple[int, object, bool]]]:
    """The store's newest reading of a meter: its time and, per numeric record in series
    order, (kind, exact value, flagged invalid), straight from the store's own decoding."""
    assert gateway.store is not None
    table = gateway.store.latest([key])
    newest = int(table.received_at.max())
    rows = sorted(
        (i for i in range(len(table)) if table.received_at[i] == newest),
        key=lambda i: int(table.series[i]),
    )
    values = [
        (int(table.kind[i]), table.value(i), bool(table.flags[i] & 1))
        for i in rows
        if table.kind[i] in NUMERIC or table.kind[i] in SECONDS
    ]
    return newest, values


def assert_block_matches_store(block: list[int], newest: int, values: list) -> None:
    assert field(block, METER_FIELDS, "state") == MeterState.OK
    assert field(block, METER_FIELDS, "read_at") == newest
    assert field(block, METER_FIELDS, "value_count") == len(values)
    assert values, "the simulated meters send numeric records"
    for slot, (kind, value, invalid) in enumerate(values):
        start = HEADER_SIZE + slot * SLOT_SIZE
        words = block[start : start + SLOT_SIZE]
        if kind in SECONDS:
            got = decode_registers(words, DataType.UINT32, "big")
            assert got == (None if invalid or value is None else seconds(value))
            continue
        got = decode_registers(words, DataType.FLOAT64, "big")
        if invalid or value is None or kind == ValueKind.BCD_ERROR:
            assert math.isnan(got)
        elif isinstance(value, float):
            assert got == value
        else:
            assert got == float(Decimal(value)), (slot, value)


async def test_stored_values_follow_readings_and_survive_a_restart(tmp_path: Path) -> None:
    seed_settings(tmp_path, SETTINGS)
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=METERS),)
    startup = StartupConfig(tmp_path, interfaces=interfaces)
    blocks = list(range(1, METERS + 1))
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            gateway = await run_gateway(nursery, startup)
            port = port_of(gateway)
            device, *before = await read_blocks(port, [0, *blocks])
            assert field(device, DEVICE_FIELDS, "source") == SourceKind.STORE
            assert [field(b, METER_FIELDS, "state") for b in before] == [MeterState.NEVER] * 3
            result = await gateway.read_all()
            assert not result.failed, [r.error for r in result.failed]
            # the map follows the stored reading (refreshed in the background; the device
            # block is read first, so it shows the refresh once the meter blocks do too)
            while True:
                device, *after = await read_blocks(port, [0, *blocks])
                counted = field(device, DEVICE_FIELDS, "meters_ok") == METERS
                if counted and field(device, DEVICE_FIELDS, "last_cycle_end") is not None:
                    break
                await trio.sleep(0.05)
            assert all(field(b, METER_FIELDS, "state") == MeterState.OK for b in after)
            for meter, block in zip(gateway.meters, after, strict=True):
                assert_block_matches_store(block, *newest_reading(gateway, meter.key))
            gateway.stop()

        async with trio.open_nursery() as nursery:
            gateway = await run_gateway(nursery, startup)
            port = port_of(gateway)
            device, *restarted = await read_blocks(port, [0, *blocks])
            assert gateway.store is not None
            for meter, block in zip(gateway.meters, restarted, strict=True):
                log = list(gateway.store.meter_log(meter.key))
                assert len(log) == 1 and log[0].status == ReadingStatus.OK  # nothing read since
                newest, values = newest_reading(gateway, meter.key)
                assert_block_matches_store(block, newest, values)
                assert field(block, METER_FIELDS, "attempt_at") == newest
                assert gateway.started_at is not None
                age = field(block, METER_FIELDS, "age_ms")
                assert age is not None
                assert age >= int((gateway.started_at.timestamp() - newest) * 1000) - 1
            assert field(device, DEVICE_FIELDS, "gateway_status") == 0
            assert field(device, DEVICE_FIELDS, "meters_ok") == METERS
            assert field(device, DEVICE_FIELDS, "last_cycle_end") is None  # none since the start

            # a settings change restarts the service on the same source; an independent client
            # reads the first meter through its own unit id as float32
            key = gateway.meters[0].key
            newest, values = newest_reading(gateway, key)
            await gateway.update_settings(
                {"modbus": {"meters": {key: {"unit_id": 20, "data_type": "float32"}}}}
            )
            while (
                gateway.supervisor.states["modbus"].restarts < 1 or gateway.modbus.address is None
            ):
                await trio.sleep(0.05)
            port = port_of(gateway)
            header = await mbpoll(port, 20, "4", 0, 2)
            read_at = await mbpoll(port, 20, "4:int", 4, 1, "-B")
            slots = [
                await mbpoll(port, 20, "4:float", HEADER_SIZE + SLOT_SIZE * i, 1, "-B")
                for i, (kind, _, invalid) in enumerate(values)
                if kind == ValueKind.DECIMAL and not invalid
            ]
            gateway.stop()
    assert header == {0: "0", 1: str(len(values))}
    assert read_at == {4: str(newest)}
    decimals = [v for kind, v, invalid in values if kind == ValueKind.DECIMAL and not invalid]
    assert slots and len(slots) == len(decimals)
    for got, value in zip(slots, decimals, strict=True):
        (text,) = got.values()
        assert float(text) == pytest.approx(float(value), rel=1e-5, abs=1e-30)


async def test_the_start_up_read_is_the_last_cycle_also_after_a_restart(tmp_path: Path) -> None:
    seed_settings(tmp_path, {**SETTINGS, "reading": {"schedule": "0 0 1 1 *"}})  # read at start
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=METERS),)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            gateway = await run_gateway(nursery, StartupConfig(tmp_path, interfaces=interfaces))
            while gateway.last_cycle is None:
                await trio.sleep(0.05)
            cycle = gateway.last_cycle
            assert len(cycle.readings) == METERS and not cycle.failed
            end = int(cycle.finished.timestamp())
            duration = round((cycle.finished - cycle.started).total_seconds() * 1000)
            while True:  # the stored values are refreshed in the background
                [device] = await read_blocks(port_of(gateway), [0])
                if field(device, DEVICE_FIELDS, "meters_ok") == METERS:
                    break
                await trio.sleep(0.05)
            assert field(device, DEVICE_FIELDS, "last_cycle_end") == end
            assert field(device, DEVICE_FIELDS, "last_cycle_ms") == duration
            # a restart of the service (any Modbus or reading settings change) keeps it
            restarts = gateway.supervisor.states["modbus"].restarts
            gateway.supervisor.restart(["modbus"])
            while (
                gateway.supervisor.states["modbus"].restarts == restarts
                or gateway.modbus is None
                or gateway.modbus.address is None
            ):
                await trio.sleep(0.05)
            [device] = await read_blocks(port_of(gateway), [0])
            assert field(device, DEVICE_FIELDS, "last_cycle_end") == end
            assert field(device, DEVICE_FIELDS, "last_cycle_ms") == duration
            gateway.stop()
