"""Decoded telegrams into the store: every record of the public libmbus frames comes back
exactly as the decoder gave it, before and after compaction."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from storekit import DAY, T0, FixedClock, open_store

from mbusgw.core import MBusError, decode
from mbusgw.gateway.store import ReadingStatus, compact_now, encode_value
from mbusgw.gateway.store.telegrams import SeriesNames, reading_from_telegrams

FRAMES = sorted((Path(__file__).parents[1] / "data" / "libmbus" / "test-frames").glob("*.hex"))


def frame_of(path: Path) -> bytes:
    return bytes.fromhex(path.read_text())


def decodable() -> list[tuple[str, bytes]]:
    found = []
    for path in FRAMES:
        try:
            decode(frame_of(path))
        except MBusError:
            continue
        found.append((path.stem, frame_of(path)))
    return found


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def test_every_record_of_the_libmbus_frames_round_trips(tmp_path) -> None:
    frames = decodable()
    assert len(frames) > 30
    store = open_store(tmp_path, clock=FixedClock(T0 + 3 * DAY))
    names = SeriesNames()
    expected: dict[str, list[object]] = {}
    for i, (meter, frame) in enumerate(frames):
        telegram = decode(frame)
        reading = reading_from_telegrams(
            meter, [telegram], T0 + i, names=names, frames=[frame], keep_manufacturer_data=True
        )
        store.put_readings([reading])
        expected[meter] = [record.value for record in telegram.records]

    def check() -> None:
        for meter, values in expected.items():
            tables = store.meter_values(meter)
            stored = [tables[s.id].value(0) for s in store.series(meter)]
            assert len(stored) == len(values), meter
            for got, want in zip(stored, values, strict=True):
                assert same(got, want), (meter, got, want)

    check()
    assert compact_now(store) == len(frames)
    check()
    raw = store.raw_telegrams(frames[0][0])
    assert raw[0].frames == (frames[0][1],)
    assert store.problems() == []


def test_series_names_and_the_meters_own_time(tmp_path) -> None:
    store = open_store(tmp_path)
    frame = frame_of(next(p for p in FRAMES if p.stem == "kamstrup_382_005"))
    reading = reading_from_telegrams("kam", [decode(frame)], T0, names=SeriesNames())
    store.put_readings([reading])
    series = [(s.quantity, s.unit, s.description) for s in store.series("kam")]
    assert series == [
        ("energy", "Wh", ""),
        ("on_time", "s", ""),
        ("power", "W", ""),
        ("power", "W", "maximum"),
        ("energy", "Wh", "tariff 1, subunit 1"),
        ("energy", "Wh", "tariff 2, subunit 1"),
    ]  # manufacturer data stays in the raw telegram
    assert [e.status_byte for e in store.meter_log("kam")] == [0]


def test_a_multi_telegram_reading_and_the_meter_clock(tmp_path) -> None:
    store = open_store(tmp_path)

    def current_time(record) -> bool:
        return (
            record.quantity == "time_point"
            and record.kind == "datetime"
            and record.storage == 0
            and record.function == "instantaneous"
            and not record.invalid
        )

    name, frame = next((n, f) for n, f in decodable() if any(map(current_time, decode(f).records)))
    other = frame_of(next(p for p in FRAMES if p.stem == "kamstrup_382_005"))
    telegrams = [decode(frame), decode(other)]
    reading = reading_from_telegrams("multi", telegrams, T0, names=SeriesNames())
    clock = next(r for r in telegrams[0].records if current_time(r))
    assert reading.meter_time == encode_value(clock.value)[1]
    store.put_readings([reading])
    values = store.meter_values("multi")
    assert sum(len(t) for t in values.values()) == len(reading.series)
    assert {int(t.meter_time[0]) for t in values.values()} == {reading.meter_time}


def test_an_application_error_telegram_is_logged_as_such(tmp_path) -> None:
    errors = Path(__file__).parents[1] / "data" / "libmbus" / "error-frames"
    frame = bytes.fromhex((errors / "application_busy.hex").read_text())
    telegram = decode(frame)
    if telegram.error is None:
        pytest.fail("the vector is an application error telegram")
    store = open_store(tmp_path)
    store.put_readings([reading_from_telegrams("busy", [telegram], T0, names=SeriesNames())])
    entry = next(iter(store.meter_log("busy")))
    assert entry.status == ReadingStatus.OTHER_ERROR and entry.error.startswith("application error")
