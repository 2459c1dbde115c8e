"""Queries see one seamless series across compacted blocks and recent rows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from storekit import DAY, T0, FixedClock, heat_reading, open_store, series_id

from mbusgw.gateway.errors import NotFound
from mbusgw.gateway.store import ReadingStatus, StoredReading, compact_now

READINGS_PER_METER = 96 * 3 + 40  # three full days and part of a fourth


@pytest.fixture
def store(tmp_path):
    clock = FixedClock(T0 + 3 * DAY + 40 * 900 + 3600 * 2)
    store = open_store(tmp_path, clock=clock)
    for meter in ("a", "b"):
        store.put_readings(
            [
                heat_reading(meter, i, frames=[bytes([0x68, i % 256])])
                for i in range(READINGS_PER_METER)
            ]
        )
    yield store
    store.close()


def energy(store, meter="a", since=None, until=None):
    return store.values(series_id(store, meter, "energy"), since, until)


def test_a_series_reads_the_same_before_and_after_compaction(store) -> None:
    before = energy(store)
    assert before.values() == [12_000 + 3 * i for i in range(READINGS_PER_METER)]
    assert compact_now(store) == 6  # two meters × three closed days
    stats = store.stats()
    assert stats.rows_waiting == 2 * 40 and stats.blocks == 6
    after = energy(store)
    for name in ("received_at", "meter_time", "kind", "exponent", "mantissa"):
        assert getattr(after, name).tolist() == getattr(before, name).tolist()
    assert store.problems() == []


def test_time_ranges_span_blocks_and_rows_with_exact_edges(store) -> None:
    compact_now(store)
    start = T0 + 2 * DAY + 95 * 900 + 7  # the last reading of a compacted day
    window = energy(store, since=start, until=start + 3 * 900)
    assert window.received_at.tolist() == [start, start + 900, start + 1800]
    assert window.values() == [12_000 + 3 * i for i in range(287, 290)]
    assert len(energy(store, since=start + 1, until=start + 900)) == 0
    temperatures = store.values(series_id(store, "b", "flow_temperature"), start, start + 901)
    assert temperatures.values() == [Decimal("65.0") + Decimal(i % 7) / 10 for i in (287, 288)]


def test_meter_values_returns_every_series(store) -> None:
    compact_now(store)
    tables = store.meter_values("b", T0 + DAY, T0 + DAY + 2 * 900)
    names = {store.catalog.series[sid].quantity: t.values() for sid, t in tables.items()}
    assert names == {
        "energy": [12_288, 12_291],
        "volume": [Decimal("456.789") + Decimal("0.011") * i for i in (96, 97)],
        "flow_temperature": [Decimal("65.5"), Decimal("65.6")],
        "fabrication_number": ["Ab", "Ab"],
    }


def test_latest_values_come_from_rows_and_from_blocks(store) -> None:
    last = READINGS_PER_METER - 1
    store.put_readings(
        [StoredReading("b", T0 + 3 * DAY + 41 * 900, status=ReadingStatus.NO_RESPONSE)]
    )
    compact_now(store)
    latest = store.latest()
    assert len(latest) == 8
    by_series = {int(s): latest.value(i) for i, s in enumerate(latest.series)}
    assert by_series[series_id(store, "a", "energy")] == 12_000 + 3 * last
    assert by_series[series_id(store, "b", "energy")] == 12_000 + 3 * last  # before the failure
    # once every row is compacted, the latest values come out of the blocks
    store.clock.advance(2 * DAY)
    compact_now(store)
    assert store.stats().rows_waiting == 0
    again = store.latest(["a"])
    assert again.values() == [
        12_000 + 3 * last,
        Decimal("456.789") + Decimal("0.011") * last,
        Decimal("65.0") + Decimal(last % 7) / 10,
        "Aa",
    ]


def test_meter_log_reports_every_reading(store) -> None:
    store.put_readings(
        [
            StoredReading(
                "a",
                T0 + 3 * DAY + 45 * 900,
                status=ReadingStatus.NO_RESPONSE,
                retries=2,
                duration_ms=2400,
                error="no answer after 2 retries",
            )
        ]
    )
    compact_now(store)
    log = store.meter_log("a", T0 + 3 * DAY + 39 * 900, T0 + 4 * DAY)
    entries = list(log)
    assert [e.status for e in entries] == [ReadingStatus.OK, ReadingStatus.NO_RESPONSE]
    assert entries[1].error == "no answer after 2 retries" and entries[1].retries == 2
    assert len(store.meter_log("a")) == READINGS_PER_METER + 1


def test_raw_telegrams_are_kept_with_their_reading(store) -> None:
    raw = store.raw_telegrams("a", T0, T0 + 900 * 3)
    assert [r.frames for r in raw] == [(b"\x68\x00",), (b"\x68\x01",), (b"\x68\x02",)]
    assert raw[1].received_at == T0 + 900 + 7


def test_a_late_row_in_a_compacted_day_is_merged(store) -> None:
    compact_now(store)
    late = StoredReading.of(
        "a", T0 + 450, [(heat_reading("a", 0).series[0], 99)]
    )  # clock stepped back
    store.put_readings([late])
    assert energy(store, "a", T0, T0 + 901).values() == [12_000, 99]
    assert compact_now(store) == 1
    assert energy(store, "a", T0, T0 + 901).values() == [12_000, 99]
    assert store.problems() == []


def test_readings_after_a_position_are_exact_within_a_second(store) -> None:
    compact_now(store)
    second = T0 + 3 * DAY + 39 * 900 + 60  # after the last reading, in the rows
    energy_spec = heat_reading("a", 0).series[0]
    store.put_readings([StoredReading.of("a", second, [(energy_spec, 1)])])
    store.put_readings(
        [
            StoredReading("a", second, status=ReadingStatus.NO_RESPONSE),  # no values
            StoredReading.of("a", second, [(energy_spec, 2)]),
        ]
    )
    closed = T0 + 2 * DAY + 95 * 900 + 7  # the last reading of a compacted day
    found = store.readings_after({"a": (closed, 0), "b": (second, 0), "nobody": (T0, 0)})
    assert set(found) == {"a", "b"} and len(found["b"]) == 0
    a = found["a"]
    assert a.received_at.tolist() == [closed + 900 * i for i in range(41)] + [second] * 3
    assert a.reading.tolist() == [i for i in range(41) for _ in range(4)] + [41, 43]
    assert a.values.values()[:4] == energy(store, "a", closed, closed + 1).values() + [
        Decimal("456.789") + Decimal("0.011") * 287,
        Decimal("65.0"),
        "Aa",
    ]
    assert a.values.values()[-2:] == [1, 2]
    # past the first reading of the second: the other two; past all three: nothing
    rest = store.readings_after({"a": (second, 1)})["a"]
    assert rest.received_at.tolist() == [second] * 2 and rest.values.values() == [2]
    assert len(store.readings_after({"a": (second, 3)})["a"]) == 0
    assert len(store.readings_after({"a": (second + 1, 0)})["a"]) == 0


def test_unknown_meters_and_series_are_not_found(store) -> None:
    with pytest.raises(NotFound):
        store.values(999)
    with pytest.raises(NotFound):
        store.meter_log("nobody")
    assert store.meter("nobody") is None


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("always", [0, 0, 4, 4, 0]),
        ("never", [None] * 5),
        ("on_change", [0, None, 4, None, 0]),
        ("on_error", [None, None, 4, 4, 0]),
    ],
)
def test_status_byte_logging_modes(tmp_path, mode: str, expected: list) -> None:
    store = open_store(tmp_path)
    store.update_settings({"log": {"status_byte": mode}})
    statuses = [ReadingStatus.OK] * 4 + [ReadingStatus.NO_RESPONSE]
    for i, (byte, status) in enumerate(zip([0, 0, 4, 4, 0], statuses, strict=True)):
        store.put_readings([heat_reading("m", i, status_byte=byte, status=status)])
    assert [e.status_byte for e in store.meter_log("m")] == expected


def test_readings_after_read_the_same_from_rows_and_from_blocks(store) -> None:
    # rows only before compaction (the publisher's usual case, read straight from the rows'
    # entries), blocks and rows after it: the same readings, values and blobs
    second = T0 + DAY + 10 * 900 + 7  # a reading of the second day
    positions = {"a": (second, 1), "b": (second, 0)}
    before = store.readings_after(positions)
    assert compact_now(store) == 6
    after = store.readings_after(positions)
    for meter in positions:
        old, new = before[meter], after[meter]
        assert new.received_at.tolist() == old.received_at.tolist()
        assert new.reading.tolist() == old.reading.tolist()
        for name in type(new.values).COLUMNS:
            assert getattr(new.values, name).tolist() == getattr(old.values, name).tolist()
        assert new.values.blobs == old.values.blobs and new.values.blobs is not None
    assert len(after["a"]) == len(after["b"]) - 1 == READINGS_PER_METER - DAY // 900 - 11


def test_a_reopened_store_holds_each_name_of_its_series_once(tmp_path) -> None:
    """The catalog read back from the file after a restart: thousands of series share a few
    quantities, units and descriptions and their meter's name (one string each, not one per
    series)."""
    store = open_store(tmp_path, clock=FixedClock(T0 + DAY))
    store.put_readings([heat_reading(meter, 0) for meter in ("a", "b")])
    store.close()
    store = open_store(tmp_path, clock=FixedClock(T0 + DAY))
    try:
        infos = store.series()
        assert len(infos) > 4
        for name in ("meter", "quantity", "unit", "description"):
            texts = [getattr(info, name) for info in infos]
            assert len({id(text) for text in texts}) == len(set(texts)), name
    finally:
        store.close()
