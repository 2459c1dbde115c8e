"""The register map over the continuous-read snapshot: blocks, views, states, overrides, invalid
addresses, caching, the CSV export and the cycle time."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import trio
import trio.testing
from modbus_rig import (
    DATE,
    ENERGY,
    FLOW_TEMP,
    IDENTITY,
    T0,
    VOLUME,
    Rig,
    field,
    meter,
    read_values,
    slot,
)

from mbusgw.gateway.clock import TrioWallClock
from mbusgw.gateway.live import RECENT, LiveReading, LiveSnapshot
from mbusgw.gateway.modbus_encoding import DataType, Number, decode_registers
from mbusgw.gateway.services.modbus_csv import map_csv
from mbusgw.gateway.services.modbus_map import (
    BLOCK_SIZE,
    DEVICE_FIELDS,
    HEADER_SIZE,
    MAX_METER_INDEX,
    METER_FIELDS,
    SLOT_SIZE,
    SLOTS_PER_BLOCK,
    ExceptionCode,
    MapConfig,
    RegisterMap,
    layout_checksum,
)
from mbusgw.gateway.services.modbus_source import (
    FOLLOW_INTERVAL,
    LiveSnapshotSource,
    MeterState,
    SeriesValue,
)
from mbusgw.gateway.settings import ModbusSettings, Settings


def test_layout_tables_are_consistent() -> None:
    offsets = []
    for fld in METER_FIELDS:
        offsets += range(fld.offset, fld.offset + fld.data_type.registers)
    assert offsets == list(range(HEADER_SIZE))
    device = [r for f in DEVICE_FIELDS for r in range(f.offset, f.offset + f.data_type.registers)]
    assert len(device) == len(set(device)) and max(device) < BLOCK_SIZE
    assert HEADER_SIZE + SLOTS_PER_BLOCK * SLOT_SIZE == BLOCK_SIZE
    assert (MAX_METER_INDEX + 1) * BLOCK_SIZE <= 65536 < (MAX_METER_INDEX + 2) * BLOCK_SIZE


def test_meter_block_by_index_holds_state_age_identity_and_values() -> None:
    rig = Rig([meter("00000001"), meter("00000002")])
    rig.reading("00000002", [ENERGY, VOLUME, FLOW_TEMP])
    rig.clock.at = T0 + timedelta(seconds=2.5)
    block = rig.block(2)
    assert field(block, METER_FIELDS, "state") == MeterState.OK
    assert field(block, METER_FIELDS, "value_count") == 3
    assert field(block, METER_FIELDS, "age_ms") == 2500
    assert field(block, METER_FIELDS, "read_at") == int(T0.timestamp())
    assert field(block, METER_FIELDS, "attempt_at") == int(T0.timestamp())
    assert field(block, METER_FIELDS, "id") == 12345678
    assert field(block, METER_FIELDS, "manufacturer") == (5 << 10) | (12 << 5) | 22
    assert field(block, METER_FIELDS, "version") == 7
    assert field(block, METER_FIELDS, "medium") == 4
    assert field(block, METER_FIELDS, "access_number") == 42
    assert field(block, METER_FIELDS, "meter_index") == 2
    assert field(block, METER_FIELDS, "layout") == layout_checksum([ENERGY, VOLUME, FLOW_TEMP])
    # the default data type is float32
    assert slot(block, 1, DataType.FLOAT32) == 123456000.0
    assert slot(block, 2, DataType.FLOAT32) == pytest.approx(1234.567)
    assert slot(block, 3, DataType.FLOAT32) == pytest.approx(-5.2)
    assert block[HEADER_SIZE + 2 : HEADER_SIZE + 4] == [0, 0]  # the rest of a float32 slot
    for unused in range(4, SLOTS_PER_BLOCK + 1):
        assert slot(block, unused, DataType.FLOAT32) is None  # NaN: no value
    # meter 1 has not been read: no values, identity from the installation
    first = rig.block(1)
    assert field(first, METER_FIELDS, "state") == MeterState.NEVER
    assert field(first, METER_FIELDS, "age_ms") is None
    assert field(first, METER_FIELDS, "id") == 1
    assert field(first, METER_FIELDS, "value_count") == 0


def test_device_block() -> None:
    meters = [meter("00000001"), meter("00000002"), meter("00000003", active=False)]
    settings = ModbusSettings(word_order="little", data_type="int32")
    rig = Rig(meters, settings)
    block = rig.block(0)
    assert field(block, DEVICE_FIELDS, "gateway_status", "little") == 3  # nothing read yet
    rig.reading("00000001", [ENERGY])
    rig.reading("00000002", ok=False)
    block = rig.block(0)
    values = {f.name: field(block, DEVICE_FIELDS, f.name, "little") for f in DEVICE_FIELDS}
    assert values == {
        "layout_version": 2,
        "gateway_status": 1,  # one ok, one failed
        "source": 1,
        "meters_installed": 3,
        "meters_enabled": 3,
        "meters_ok": 1,
        "meters_failed": 1,
        "meters_never": 0,
        "meters_passive": 1,
        "last_cycle_ms": None,
        "last_cycle_end": None,
        "gateway_time": int(T0.timestamp()),
        "default_data_type": DataType.INT32,
        "word_order": 1,
        "word_order_probe": 0x12345678,
        "block_size": 125,
        "header_size": 17,
        "slots_per_block": 27,
        "max_meter_index": 523,
        "gateway_unit_id": 1,
    }
    assert block[17:19] == [0x5678, 0x1234]  # the probe shows the word order
    assert block[24:] == [0] * (BLOCK_SIZE - 24)


def test_states_failed_keeps_the_last_good_values_and_passive() -> None:
    rig = Rig([meter("00000001"), meter("00000002", active=False)])
    rig.reading("00000001", [VOLUME])
    rig.reading("00000001", ok=False, at=T0 + timedelta(seconds=30))
    rig.clock.at = T0 + timedelta(seconds=40)
    block = rig.block(1)
    assert field(block, METER_FIELDS, "state") == MeterState.FAILED
    assert field(block, METER_FIELDS, "age_ms") == 40_000
    assert field(block, METER_FIELDS, "attempt_at") == int(T0.timestamp()) + 30
    assert slot(block, 1, DataType.FLOAT32) == pytest.approx(1234.567)
    assert field(rig.block(2), METER_FIELDS, "state") == MeterState.PASSIVE
    rig.reading("00000001", [VOLUME], at=T0 + timedelta(seconds=45))
    assert field(rig.block(1), METER_FIELDS, "state") == MeterState.OK


def test_overrides_series_then_meter_then_default_and_dates_are_seconds() -> None:
    settings = (
        Settings()
        .updated(
            {
                "modbus": {
                    "data_type": "int32",
                    "constant": "10",
                    "meters": {
                        "00000001": {
                            "data_type": "int16",
                            "constant": "1",
                            "series": {"0413": {"data_type": "uint64", "constant": "1000"}},
                        },
                    },
                }
            }
        )
        .modbus
    )
    rig = Rig([meter("00000001"), meter("00000002")], settings)
    values = [ENERGY, VOLUME, FLOW_TEMP, DATE]
    rig.reading("00000001", values)
    rig.reading("00000002", values)
    first, second = rig.block(1), rig.block(2)
    assert slot(first, 1, DataType.INT16) == 32767  # 123 456 000 saturates int16
    assert slot(first, 2, DataType.UINT64) == 1234567  # series override: ×1000, exact
    assert slot(first, 3, DataType.INT16) == -5  # -5.2 rounds to -5
    assert slot(first, 4, DataType.UINT32) == 1_767_225_600  # a date: uint32 seconds, unscaled
    assert slot(first, 5, DataType.INT16) is None  # unused slot: the meter's type's marker
    assert slot(second, 1, DataType.INT32) == 1_234_560_000  # ×10, the default constant
    assert slot(second, 2, DataType.INT32) == 12346  # ×10 default constant, rounded
    assert slot(second, 3, DataType.INT32) == -52
    assert slot(second, 4, DataType.UINT32) == 1_767_225_600


def test_unit_id_view_and_more_values_than_a_block_holds() -> None:
    settings = Settings().updated({"modbus": {"meters": {"00000002": {"unit_id": 17}}}}).modbus
    rig = Rig([meter("00000001"), meter("00000002")], settings)
    many = [SeriesValue(bytes((0x04, 0x13, i)), Number(i)) for i in range(30)]
    rig.reading("00000002", many)
    own = rig.map.read(17, 0, 125)
    assert own == rig.block(2)  # the first 125 registers are the block
    beyond = rig.map.read(17, 125, 12)  # slots 28-30 only through the unit id
    assert [decode_registers(beyond[i:], DataType.FLOAT32, "big") for i in (0, 4, 8)] == [
        27.0,
        28.0,
        29.0,
    ]
    assert rig.map.read(17, 137, 1) == ExceptionCode.ILLEGAL_DATA_ADDRESS
    assert rig.map.read(18, 0, 1) == ExceptionCode.GATEWAY_PATH_UNAVAILABLE
    # the gateway also answers on unit ids 0 and 255
    assert rig.map.read(0, 250, 125) == rig.map.read(255, 250, 125) == rig.block(2)


def test_invalid_addresses_exception_or_zero_fill() -> None:
    meters = [meter("00000001"), meter("00000002"), meter("00000003")]
    disabled = {"meters": {"00000002": {"enabled": False}}}
    strict = Rig(meters, Settings().updated({"modbus": disabled}).modbus)
    zero = Rig(
        meters,
        Settings().updated({"modbus": {**disabled, "invalid_addresses": "zero_fill"}}).modbus,
    )
    for rig in (strict, zero):
        rig.reading("00000003", [ENERGY])
        assert rig.map.read(1, 0, 0) == ExceptionCode.ILLEGAL_DATA_VALUE
        assert rig.map.read(1, 0, 126) == ExceptionCode.ILLEGAL_DATA_VALUE
        assert rig.map.read(1, 65530, 7) == ExceptionCode.ILLEGAL_DATA_ADDRESS
        assert rig.map.read(99, 0, 1) == ExceptionCode.GATEWAY_PATH_UNAVAILABLE
        # across a block boundary: the end of the device block and meter 1's header
        crossing = rig.map.read(1, 120, 10)
        assert crossing == rig.block(0)[120:] + rig.block(1)[:5]
    # meter 2 is not served, and there is no meter 4
    assert strict.map.read(1, 250, 1) == ExceptionCode.ILLEGAL_DATA_ADDRESS
    assert strict.map.read(1, 374, 2) == ExceptionCode.ILLEGAL_DATA_ADDRESS  # end of 2, start of 3
    assert strict.map.read(1, 500, 10) == ExceptionCode.ILLEGAL_DATA_ADDRESS
    assert zero.map.read(1, 250, 125) == [0] * 125
    assert zero.map.read(1, 374, 2) == [0, zero.block(3)[0]]
    assert zero.map.read(1, 65000, 125) == [0] * 125


def test_meters_past_the_gateway_view_are_reached_through_their_unit_id() -> None:
    meters = [meter(f"{i:08d}") for i in range(1, MAX_METER_INDEX + 3)]
    last = meters[-1].key
    settings = Settings().updated({"modbus": {"meters": {last: {"unit_id": 9}}}}).modbus
    rig = Rig(meters, settings)
    rig.reading(last, [VOLUME])
    assert isinstance(rig.map.read(1, MAX_METER_INDEX * BLOCK_SIZE, 125), list)
    own = rig.map.read(9, 0, 125)
    assert field(own, METER_FIELDS, "meter_index") == MAX_METER_INDEX + 2
    assert slot(own, 1, DataType.FLOAT32) == pytest.approx(1234.567)


def test_encoding_is_cached_per_reading() -> None:
    rig = Rig([meter("00000001")])
    rig.reading("00000001", [ENERGY, VOLUME])
    first = rig.block(1)
    cached = rig.map._encoded["00000001"][3]
    assert rig.block(1) == first and rig.map._encoded["00000001"][3] is cached
    rig.reading("00000001", [VOLUME, ENERGY], at=T0 + timedelta(seconds=1))
    moved = rig.block(1)
    assert slot(moved, 1, DataType.FLOAT32) == pytest.approx(1234.567)
    assert field(moved, METER_FIELDS, "layout") != field(first, METER_FIELDS, "layout")
    # a meter removed from the list is dropped from the cache and the map
    rig.meters = []
    assert rig.map.read(1, 125, 1) == ExceptionCode.ILLEGAL_DATA_ADDRESS
    assert rig.map._encoded == {}


def test_csv_export() -> None:
    settings = (
        Settings()
        .updated(
            {
                "modbus": {
                    "meters": {
                        "00000001": {
                            "unit_id": 5,
                            "series": {"0413": {"data_type": "int64", "constant": "1000"}},
                        }
                    }
                }
            }
        )
        .modbus
    )
    rig = Rig([meter("00000001"), meter("00000002")], settings)
    rig.reading("00000001", [ENERGY, VOLUME, DATE])
    text = map_csv(rig.map.rows(), "big")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.startswith("unit_id,address,reference,registers,data_type,constant,word_order,")
    by_meter = [r for r in rows if r["meter_key"] == "00000001" and r["unit_id"] == "1"]
    assert len(rows) == len(DEVICE_FIELDS) + 2 * (len(METER_FIELDS) + 3) + len(METER_FIELDS)
    volume = next(r for r in by_meter if r["series"] == "0413")
    assert volume == {
        **volume,
        "address": str(125 + 17 + 4),
        "reference": str(125 + 17 + 4 + 1),
        "registers": "4",
        "data_type": "int64",
        "constant": "1000",
        "field": "value_2",
        "quantity": "volume",
        "unit": "m³",
        "function": "instantaneous",
        "meter_index": "1",
        "position": "flat 00000001",
    }
    own = [r for r in rows if r["unit_id"] == "5"]
    assert own[0]["address"] == "0" and own[-1]["field"] == "value_3"
    assert next(r for r in own if r["field"] == "value_3")["data_type"] == "uint32"


class Following:
    """A snapshot, the wall clock and a live source following the snapshot for ``meters``."""

    def __init__(self, meters: list) -> None:
        self.snapshot = LiveSnapshot()
        self.clock = TrioWallClock(T0)
        self.source = LiveSnapshotSource(self.snapshot, lambda: meters, self.clock, read_values)

    def read(self, key: str, ok: bool = True) -> None:
        telegrams = ((IDENTITY, (ENERGY,)),) if ok else ()
        self.snapshot.update(LiveReading(key, self.clock.now(), ok, telegrams))


@asynccontextmanager
async def following(meters: list) -> AsyncIterator[Following]:
    live = Following(meters)
    async with trio.open_nursery() as nursery:
        await nursery.start(live.source.follow)
        yield live
        await trio.sleep(FOLLOW_INTERVAL)  # it has looked since the last reading
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("meters_count", [2])
async def test_cycle_time_follows_the_snapshot(autojump_clock, meters_count) -> None:
    meters = [meter(f"{i:08d}") for i in range(1, meters_count + 1)]
    async with following(meters) as live:
        source, clock = live.source, live.clock
        rig_map = RegisterMap(MapConfig(ModbusSettings()), source, clock)
        for second in range(4):
            await trio.sleep(1.5)
            live.read(meters[second % 2].key)
            await trio.testing.wait_all_tasks_blocked()
    cycle = source.last_cycle()
    assert cycle is not None and cycle.duration_s == pytest.approx(3.0)
    block = rig_map.device_block(clock.now())
    assert field(block, DEVICE_FIELDS, "last_cycle_ms") == 3000
    assert field(block, DEVICE_FIELDS, "last_cycle_end") == int(cycle.finished_at.timestamp())


def test_the_documented_tables_match_the_layout() -> None:
    text = (Path(__file__).parents[2] / "docs" / "modbus.md").read_text()
    for fld in (*DEVICE_FIELDS, *METER_FIELDS):
        assert f"| {fld.offset} | {fld.name} | {fld.data_type.label} |" in text, fld.name


async def test_the_cycle_follower_waits_for_no_reading(autojump_clock) -> None:
    """It looks every ``FOLLOW_INTERVAL`` instead: a task waiting for a change of the snapshot
    would make the native driver hand each continuous reading back to trio. The cycle ends when
    its last meter was read, not when that is seen."""
    meters = [meter("00000001"), meter("00000002")]
    async with following(meters) as live:
        await trio.sleep(0.25)
        reading = LiveReading("00000001", live.clock.now(), True, ((IDENTITY, (ENERGY,)),))
        assert not live.snapshot.put(reading)  # nobody waits
        await trio.sleep(0.25)
        live.read("00000002")
    cycle = live.source.last_cycle()
    assert cycle is not None and cycle.duration_s == pytest.approx(0.5)
    assert cycle.finished_at == T0 + timedelta(seconds=0.5)


async def test_a_cycle_completes_when_a_meter_goes_passive(autojump_clock) -> None:
    meters = [meter("00000001"), meter("00000002")]
    async with following(meters) as live:
        await trio.sleep(2)
        live.read("00000001")
        await trio.testing.wait_all_tasks_blocked()
        assert live.source.last_cycle() is None  # meter 2 has not been read
        meters[1] = meter("00000002", active=False)
        live.read("00000001", ok=False)
        await trio.testing.wait_all_tasks_blocked()
    assert live.source.last_cycle().duration_s == pytest.approx(2.0)


async def test_a_cycle_completes_when_the_follower_falls_behind(autojump_clock) -> None:
    """More updates than the snapshot keeps arrive before the follower runs: it compares
    every meter instead."""
    async with following([meter("00000001"), meter("00000002")]) as live:
        await trio.sleep(1)
        for _ in range(RECENT + 10):
            live.read("00000001")
        live.read("00000002")
        await trio.testing.wait_all_tasks_blocked()
    assert live.source.last_cycle().duration_s == pytest.approx(1.0)


def test_a_failed_attempt_keeps_the_decoded_values() -> None:
    decoded: list[tuple] = []

    def counting_reader(telegrams):
        decoded.append(telegrams)
        return read_values(telegrams)

    rig = Rig([meter("00000001")], reader=counting_reader)
    rig.reading("00000001", [ENERGY])
    good = rig.source.values(rig.meters[0])
    rig.reading("00000001", ok=False, at=T0 + timedelta(seconds=5))
    failed = rig.source.values(rig.meters[0])
    assert failed.state == MeterState.FAILED and failed.values is good.values
    assert len(decoded) == 1
