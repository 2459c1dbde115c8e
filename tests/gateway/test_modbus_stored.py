"""The stored-values source against the snapshot source: the same real libmbus readings, once
through the continuous-read snapshot and once through a real store, give the same registers,
the same CSV map and the same value model, before and after compaction. Then the source's own
rules: states from the meter log, refresh after stored readings, cycles, a damaged store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
import trio.testing
from modbus_rig import FixedClock, meter

from mbusgw.core import decode, decode_application
from mbusgw.gateway.events import CYCLE_FINISHED, READINGS_STORED, Event, EventBus
from mbusgw.gateway.live import LiveReading, LiveSnapshot
from mbusgw.gateway.modbus_encoding import Number
from mbusgw.gateway.services.modbus import keep_image
from mbusgw.gateway.services.modbus_csv import map_csv
from mbusgw.gateway.services.modbus_map import (
    BLOCK_SIZE,
    DEVICE_FIELDS,
    MapConfig,
    RegisterMap,
)
from mbusgw.gateway.services.modbus_source import (
    LiveSnapshotSource,
    MeterState,
    SourceKind,
    identity_from_meter,
)
from mbusgw.gateway.services.modbus_stored import (
    StoredValuesSource,
    quantity_number,
    record_signature,
    series_fields,
    unit_number,
)
from mbusgw.gateway.settings import Settings
from mbusgw.gateway.store import (
    ReadingStatus,
    SeriesSpec,
    Store,
    StoredReading,
    compact_now,
    store_path,
)
from mbusgw.gateway.store.telegrams import SeriesNames, reading_from_telegrams

DATA = Path(__file__).parents[1] / "data" / "libmbus" / "test-frames"
FRAMES = sorted(DATA.glob("*.hex"))
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECOND_READING = T0 + timedelta(minutes=15)


def frame(stem: str) -> bytes:
    return bytes.fromhex("".join((DATA / f"{stem}.hex").read_text().split()))


def settings(keys: list[str], **modbus: object):
    """Every meter also has its own unit id, so both views are compared."""
    meters = {key: {"unit_id": 10 + i} for i, key in enumerate(keys)}
    return Settings().updated({"modbus": {"port": 0, "meters": meters, **modbus}}).modbus


class Twin:
    """The same readings in a snapshot and in a store, and a register map over each."""

    def __init__(self, tmp_path: Path, **modbus: object) -> None:
        self.clock = FixedClock(T0 + timedelta(hours=1))
        self.store = Store.open(store_path(tmp_path), clock=self.clock)
        self.snapshot = LiveSnapshot()
        self.meters: list = []
        self.modbus = modbus
        self.names = SeriesNames()

    def read(self, key: str, frames: tuple[bytes, ...], at: datetime = T0) -> None:
        """One good reading of every frame of ``frames`` (a multi-telegram reading)."""
        self.install(key)
        telegrams = tuple(decode(f) for f in frames)
        self.snapshot.update(LiveReading(key, at, True, telegrams))
        received = int(at.timestamp())
        reading = reading_from_telegrams(key, telegrams, received, names=self.names, frames=frames)
        self.store.put_readings([reading])

    def install(self, key: str) -> None:
        if key not in [m.key for m in self.meters]:
            self.meters.append(meter(key))

    def fail(self, key: str, at: datetime) -> None:
        self.install(key)
        self.snapshot.update(LiveReading(key, at, False, (), "no response"))
        self.store.put_readings(
            [StoredReading(key, int(at.timestamp()), status=ReadingStatus.NO_RESPONSE, error="x")]
        )

    def maps(self) -> tuple[RegisterMap, RegisterMap]:
        config = MapConfig(settings([m.key for m in self.meters], **self.modbus))
        live = LiveSnapshotSource(self.snapshot, lambda: self.meters, self.clock)
        stored = StoredValuesSource(self.store, lambda: self.meters, self.clock, EventBus())
        return RegisterMap(config, live, self.clock), RegisterMap(config, stored, self.clock)


def views(register_map: RegisterMap, index: int) -> list:
    """A meter's block in the gateway view, and its own view (three requests deep)."""
    gateway = register_map.read(1, index * BLOCK_SIZE, BLOCK_SIZE)
    own = [register_map.read(9 + index, address, 125) for address in (0, 125, 250)]
    return [gateway, *own]


def assert_same_maps(live: RegisterMap, stored: RegisterMap, meters: list) -> None:
    for index, installed in enumerate(meters, start=1):
        assert stored.source.values(installed) == live.source.values(installed), installed.key
        assert views(stored, index) == views(live, index), installed.key
    assert map_csv(stored.rows(), "big") == map_csv(live.rows(), "big")
    source = next(f for f in DEVICE_FIELDS if f.name == "source")
    device_live, device_stored = live.device_block(T0), stored.device_block(T0)
    assert device_live[source.offset] == SourceKind.LIVE
    assert device_stored[source.offset] == SourceKind.STORE
    device_stored[source.offset] = SourceKind.LIVE
    assert device_stored == device_live


@pytest.mark.parametrize("compacted", [False, True], ids=["rows", "day blocks"])
@pytest.mark.parametrize("data_type", ["float64", "int32"])
def test_every_libmbus_frame_gives_the_same_registers_from_the_store(
    tmp_path: Path, compacted: bool, data_type: str
) -> None:
    twin = Twin(tmp_path, data_type=data_type, constant="10")
    for number, path in enumerate(FRAMES, start=1):
        twin.read(f"{number:08d}", (frame(path.stem),))
    # several telegrams in one reading; the repeated records get the store's "FF k" suffix
    kamstrup = frame("kamstrup_382_005")
    twin.read("90000001", (frame("ELV-Elvaco-CMa10"), kamstrup, kamstrup))
    # a later failed attempt: values of the good reading, state and attempt of the failure
    twin.read("90000002", (frame("landis+gyr_ultraheat_t230"),))
    twin.fail("90000002", SECOND_READING)
    # the meter's telegram changed: only the newest reading's records have slots
    twin.read("90000003", (frame("minol_minocal_c2"),))
    twin.read("90000003", (frame("abb_delta"),), SECOND_READING)
    if compacted:
        twin.clock.at = T0 + timedelta(days=2)
        assert compact_now(twin.store) > 0
        assert twin.store.stats().rows_waiting == 0
    live, stored = twin.maps()
    assert_same_maps(live, stored, twin.meters)
    twin.store.close()


def test_a_record_error_and_a_telegram_without_header(tmp_path: Path) -> None:
    """A VIFE record error voids the value; CI 0x78 has no header: the meter list's identity."""
    twin = Twin(tmp_path)
    data = bytes.fromhex("0493150A0000000413E803000002FD1700000F0102")
    telegram = decode_application(0x78, data)
    assert telegram.records[0].record_error == "no data available"
    twin.meters.append(meter("12345678", manufacturer="ELV", version=3, medium=7))
    twin.snapshot.update(LiveReading("12345678", T0, True, (telegram,)))
    received = int(T0.timestamp())
    twin.store.put_readings(
        [reading_from_telegrams("12345678", [telegram], received, names=twin.names)]
    )
    live, stored = twin.maps()
    assert_same_maps(live, stored, twin.meters)
    values = stored.source.values(twin.meters[0])
    assert [v.number for v in values.values] == [None, Number(1000, -3), Number(0)]
    assert values.identity == identity_from_meter(twin.meters[0])


def test_states_identity_and_times_from_the_meter_log(tmp_path: Path) -> None:
    twin = Twin(tmp_path)
    twin.read("00000001", (frame("kamstrup_382_005"),))
    twin.fail("00000002", T0)
    twin.meters.append(meter("00000003"))  # never read
    twin.read("00000004", (frame("abb_delta"),))
    twin.meters[3] = replace(twin.meters[3], active=False)
    # a reading whose raw telegram is no longer kept: the identity of the meter list, and the
    # status byte as the meter log kept it
    twin.meters.append(meter("00000005", manufacturer="ABB", version=2, medium=2))
    kept = reading_from_telegrams(
        "00000005", [decode(frame("abb_delta"))], int(T0.timestamp()), names=twin.names
    )
    twin.store.put_readings([replace(kept, status_byte=0x10)])
    _, stored = twin.maps()
    source = stored.source
    first, failed, never, passive, unkept = (source.values(m) for m in twin.meters)
    assert first.state == MeterState.OK and first.read_at == first.attempt_at == T0
    assert first.identity.id == int(decode(frame("kamstrup_382_005")).header.id, 16)
    assert failed.state == MeterState.FAILED and failed.values == ()
    assert failed.read_at is None and failed.attempt_at == T0
    assert never.state == MeterState.NEVER and never.attempt_at is None
    assert passive.state == MeterState.PASSIVE and passive.values
    assert unkept.identity == replace(identity_from_meter(twin.meters[4]), status_byte=0x10)
    # the same object while nothing changed; a changed meter entry is rebuilt, not re-read
    assert source.values(twin.meters[0]) is first
    twin.meters[0] = replace(twin.meters[0], active=False)
    assert source.values(twin.meters[0]).state == MeterState.PASSIVE
    assert source.values(twin.meters[0]).values == first.values


async def test_follow_refreshes_stored_meters_and_notes_complete_cycles(tmp_path: Path) -> None:
    twin = Twin(tmp_path)
    twin.read("00000001", (frame("kamstrup_382_005"),))
    twin.read("00000002", (frame("abb_delta"),))
    events = EventBus()
    source = StoredValuesSource(twin.store, lambda: twin.meters, twin.clock, events)
    one, two = twin.meters
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(source.follow)
            before = source.values(one)
            other = source.values(two)
            twin.fail("00000001", SECOND_READING)
            events.publish(Event(READINGS_STORED, SECOND_READING, None, {"meters": [one.key]}))
            while source.values(one) is before:
                await trio.sleep(0.01)
            after = source.values(one)
            assert after.state == MeterState.FAILED and after.values == before.values
            assert after.attempt_at == SECOND_READING and after.read_at == T0
            assert source.values(two) is other
            # an event without any change keeps the object: the map keeps its registers.
            # Events are handled in order, so once meter one shows its third reading, meter
            # two has been read again too.
            events.publish(Event(READINGS_STORED, SECOND_READING, None, {"meters": [two.key]}))
            events.publish(Event(CYCLE_FINISHED, T0, None, {"meters": 1, "duration_s": 0.5}))
            events.publish(Event(CYCLE_FINISHED, T0, None, {"meters": 2, "duration_s": 3.0}))
            twin.read("00000001", (frame("kamstrup_382_005"),), SECOND_READING + timedelta(1))
            events.publish(Event(READINGS_STORED, SECOND_READING, None, {"meters": [one.key]}))
            while source.values(one) is after:
                await trio.sleep(0.01)
            assert source.values(one).state == MeterState.OK
            assert source.values(two) is other
            cycle = source.last_cycle()
            assert (cycle.finished_at, cycle.duration_s) == (T0, 3.0)  # the retry did not count
            nursery.cancel_scope.cancel()
    events.publish(Event(CYCLE_FINISHED, T0, None, {}))
    assert events._subscribers == []  # the stopped source no longer listens


async def test_a_cycle_before_the_source_started_is_the_last_cycle(tmp_path: Path) -> None:
    """The start-up read (or any cycle before the Modbus service started or restarted) sets
    last_cycle for either source; a later retry of a few meters does not replace it."""
    twin = Twin(tmp_path)
    twin.read("00000001", (frame("kamstrup_382_005"),))
    twin.read("00000002", (frame("abb_delta"),))
    events = EventBus()
    events.publish(Event(CYCLE_FINISHED, T0, None, {"meters": 2, "duration_s": 1.5}))
    events.publish(Event(READINGS_STORED, T0, None, {"meters": ["00000001"]}))
    stored = StoredValuesSource(twin.store, lambda: twin.meters, twin.clock, events)
    live = LiveSnapshotSource(LiveSnapshot(), lambda: twin.meters, twin.clock, events=events)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for source in (stored, live):
                await nursery.start(source.follow)
                cycle = source.last_cycle()
                assert cycle is not None and (cycle.finished_at, cycle.duration_s) == (T0, 1.5)
            later = T0 + timedelta(minutes=1)
            events.publish(Event(CYCLE_FINISHED, later, None, {"meters": 1, "duration_s": 0.2}))
            events.publish(Event(READINGS_STORED, later, None, {"meters": ["00000001"]}))
            await trio.testing.wait_all_tasks_blocked()
            assert stored.last_cycle().finished_at == T0  # the retry of one meter did not count
            nursery.cancel_scope.cancel()


def test_a_damaged_block_leaves_only_its_meter_without_values(tmp_path: Path) -> None:
    twin = Twin(tmp_path)
    twin.read("00000001", (frame("kamstrup_382_005"),))
    twin.read("00000002", (frame("abb_delta"),))
    twin.clock.at = T0 + timedelta(days=2)
    compact_now(twin.store)
    env = twin.store.env
    with env.env.begin(write=True, db=env.db.blocks) as txn:
        cursor = txn.cursor()
        assert cursor.first()
        key, value = cursor.item()
        txn.put(key, value[:-3] + bytes(b ^ 0x55 for b in value[-3:]))
    _, stored = twin.maps()
    values = [stored.source.values(m) for m in twin.meters]
    assert [v.state for v in values] == [MeterState.NEVER, MeterState.OK]
    assert values[1].values


def test_series_fields_from_signatures_and_names() -> None:
    # DIF 0xC4 (storage bit) + DIFE 0x5A: storage 1 + 0xA·2 = 21, tariff 1, subunit 1; maximum
    fields = series_fields(bytes.fromhex("D45A13"), "volume", "m³", "")
    assert (fields.function, fields.storage, fields.tariff, fields.subunit) == (1, 21, 1, 1)
    assert (fields.quantity, fields.unit) == (2, 3)
    # a fixed data structure record: one unit byte; the storage comes from its description
    assert series_fields(b"\x69", "volume", "m³", "storage 1").storage == 1
    assert quantity_number("quantity_200") == 200 and quantity_number("nonsense") == 0
    assert unit_number("unit_99", 1) == 99 and unit_number("kWh", 23) == 31
    assert unit_number("", 1) == 0 and unit_number("°C", 9) == 15
    assert record_signature(b"\x04\x06\xff\x02", {b"\x04\x06"}) == b"\x04\x06"
    assert record_signature(b"\x69\xff\x01", {b"\x69"}) == b"\x69"  # two fixed counters
    assert record_signature(b"\x0c\xff\x01", {b"\x0c\x13"}) == b"\x0c\xff\x01"


def test_slots_follow_the_order_the_store_first_saw_the_series(tmp_path: Path) -> None:
    twin = Twin(tmp_path)
    twin.meters.append(meter("00000001"))
    volume, energy = (
        SeriesSpec(b"\x04\x13", "volume", "m³"),
        SeriesSpec(b"\x04\x06", "energy", "Wh"),
    )
    at = int(T0.timestamp())
    twin.store.put_readings([StoredReading.of("00000001", at, [(volume, 5)])])
    twin.store.put_readings([StoredReading.of("00000001", at + 900, [(energy, 7), (volume, 6)])])
    _, stored = twin.maps()
    values = stored.source.values(twin.meters[0]).values
    assert [(v.series, v.number) for v in values] == [
        (b"\x04\x13", Number(6)),
        (b"\x04\x06", Number(7)),
    ]


async def test_a_stored_reading_changes_only_its_meters_image(tmp_path: Path) -> None:
    twin = Twin(tmp_path)
    twin.read("00000001", (frame("kamstrup_382_005"),))
    twin.read("00000002", (frame("abb_delta"),))
    events = EventBus()
    source = StoredValuesSource(twin.store, lambda: twin.meters, twin.clock, events)
    register_map = RegisterMap(MapConfig(Settings().modbus), source, twin.clock)
    one, two = twin.meters
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(source.follow)
            await nursery.start(keep_image, register_map, source)
            image = dict(register_map._encoded)
            state = register_map.read(1, 125, 1)
            version = source.version
            twin.fail(one.key, SECOND_READING)
            events.publish(Event(READINGS_STORED, SECOND_READING, None, {"meters": [one.key]}))
            assert await source.wait_changed(version) == (version + 1, {one.key})
            while register_map._encoded[one.key] is image[one.key]:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert state == [MeterState.OK] and register_map.read(1, 125, 1) == [MeterState.FAILED]
    assert register_map._encoded[two.key] is image[two.key]  # the other meter kept its block
    assert register_map.read(1, 0, 9)[5:7] == [1, 1]  # device block: one ok, one failed
