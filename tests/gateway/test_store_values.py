"""Exact values: every kind round-trips through encode/decode, rows, blocks and queries."""

from __future__ import annotations

import datetime as dt
import math
import struct
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from storekit import DAY, T0, open_store

from mbusgw.core.units import Flag
from mbusgw.gateway.errors import InvalidReading
from mbusgw.gateway.store import (
    SeriesSpec,
    StoredReading,
    ValueKind,
    compact_now,
    decode_value,
    encode_value,
)

EVERY_KIND = [
    None,
    0,
    -(2**63),
    2**63 - 1,
    10**25,  # kept exactly as 1 × 10**25
    Decimal("-0.001"),
    Decimal("123456789012345678.9"),
    Decimal("1E+127"),
    Decimal("-5E-128"),
    1.5,
    -0.0,
    math.inf,
    float("nan"),
    dt.date(1969, 12, 31),
    dt.date(2099, 2, 28),
    dt.datetime(2024, 2, 29, 23, 59, 58),
    dt.datetime(1901, 1, 1, 0, 0, 1),
    dt.time(23, 59, 58),
    dt.time(0, 0),
    "",
    "Kamstrup ÆØÅ ✓",
    b"",
    b"\x00\xff\x00",
]


def same(a: object, b: object) -> bool:
    """Equal and of the same kind: floats bit for bit; decimals with exponent >= 0 as int."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(b, Decimal):
        whole = b.as_tuple().exponent >= 0  # type: ignore[operator]
        return isinstance(a, int if whole else Decimal) and Decimal(a) == b  # type: ignore[arg-type]
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("value", EVERY_KIND, ids=repr)
def test_every_kind_round_trips_exactly(value: object) -> None:
    assert same(decode_value(*encode_value(value)), value)


def test_kinds_are_what_the_meter_sent() -> None:
    assert encode_value(7)[0] == ValueKind.DECIMAL
    assert encode_value(Decimal("7.0"))[:3] == (ValueKind.DECIMAL, 70, -1)
    assert encode_value(7.0)[0] == ValueKind.REAL
    assert encode_value(dt.date(2024, 1, 1))[0] == ValueKind.DATE
    aware = dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert decode_value(*encode_value(aware)) == dt.datetime(2024, 1, 1)


@pytest.mark.parametrize(
    "value",
    [True, 2**64, Decimal("1E+200"), Decimal("NaN"), Decimal("1.0000000000000000000000001"), [1]],
)
def test_values_the_store_cannot_keep_exactly_are_refused(value: object) -> None:
    with pytest.raises(InvalidReading):
        encode_value(value)


@pytest.mark.property
@given(st.integers(-(2**63), 2**63 - 1), st.integers(-128, 127))
def test_any_decimal_round_trips(mantissa: int, exponent: int) -> None:
    value = decode_value(ValueKind.DECIMAL, mantissa, exponent)
    assert encode_value(value)[0] == ValueKind.DECIMAL
    assert Decimal(value) == Decimal(mantissa).scaleb(exponent)


def _specs(n: int) -> list[SeriesSpec]:
    return [SeriesSpec(bytes([0x04, 0x10 + i]), f"q{i}", "u") for i in range(n)]


def test_every_kind_survives_the_store_hot_and_compacted(tmp_path) -> None:
    store = open_store(tmp_path)
    specs = _specs(len(EVERY_KIND))
    readings = [
        StoredReading.of("m", T0 - 2 * DAY + 900 * i, list(zip(specs, EVERY_KIND, strict=True)))
        for i in range(3)
    ]
    store.put_readings(readings)
    ids = [s.id for s in store.series("m")]

    def check() -> None:
        for sid, expected in zip(ids, EVERY_KIND, strict=True):
            table = store.values(sid)
            assert len(table) == 3
            assert all(same(v, expected) for v in table.values()), (sid, table.values())

    check()
    assert compact_now(store) == 1
    assert store.stats().rows_waiting == 0
    check()
    assert store.problems() == []


def test_repeated_record_identity_becomes_its_own_series(tmp_path) -> None:
    store = open_store(tmp_path)
    spec = SeriesSpec(b"\x04\x13", "volume", "m³")
    store.put_readings([StoredReading.of("m", T0, [(spec, 1), (spec, 2), (spec, 3)])])
    series = store.series("m")
    assert [s.signature for s in series] == [b"\x04\x13", b"\x04\x13\xff\x01", b"\x04\x13\xff\x02"]
    assert [store.values(s.id).values() for s in series] == [[1], [2], [3]]


@pytest.mark.parametrize(
    "change",
    [
        {"meter": ""},
        {"received_at": -1},
        {"received_at": 1.5},
        {"retries": 256},
        {"status_byte": 300},
        {"status": 99},
        {"frames": ["text"]},
        {"kind": np.array([9], np.uint8)},
        {"exponent": np.array([200], np.int16)},
        {"mantissa": np.array([1.5])},
        {"real": None, "kind": np.array([ValueKind.REAL], np.uint8)},
        {"blobs": [b"bytes"], "kind": np.array([ValueKind.TEXT], np.uint8)},
        {"series": []},
    ],
)
def test_a_malformed_reading_is_refused_alone_and_logged(tmp_path, change: dict) -> None:
    store = open_store(tmp_path)
    good = StoredReading.of("m", T0, [(SeriesSpec(b"\x04\x13", "volume", "m³"), 1)])
    bad = StoredReading.of("bad", T0, [(SeriesSpec(b"\x04\x13", "volume", "m³"), 1)])
    for name, value in change.items():
        setattr(bad, name, value)
    receipt = store.put_readings([bad, good])
    assert (receipt.readings, [meter for meter, _ in receipt.refused]) == (1, [bad.meter])
    assert store.stats().readings == 1 and [m.name for m in store.meters()] == ["m"]
    store.write(lambda ctx: None)  # commits the pending system log
    logged = [(e.origin, e.text) for e in store.system_log() if "not stored" in e.text]
    assert logged == [(bad.meter, f"reading not stored: {receipt.refused[0][1]}")]


def test_a_series_spec_is_checked_when_made() -> None:
    with pytest.raises(InvalidReading):
        SeriesSpec(b"", "volume", "m³")
    with pytest.raises(InvalidReading):
        SeriesSpec(b"\x04" * 65, "volume", "m³")


def test_flags_bcd_errors_and_invalid_dates_survive(tmp_path) -> None:
    specs = _specs(4)
    reading = StoredReading(
        "m",
        T0 - 2 * DAY,
        specs,
        np.array([ValueKind.BCD_ERROR, ValueKind.DATE, ValueKind.TIME, ValueKind.REAL], np.uint8),
        np.array([0x12A4, 0, 3600, 0], np.int64),
        np.array([0, 0, 0, -3], np.int8),
        real=np.array([0, 0, 0, 1234.5]),
        blobs=["12A4", None, None, None],
        flags=np.array([Flag.INVALID, Flag.INVALID, Flag.INVALID | Flag.SUMMER_TIME, 0], np.uint8),
    )
    store = open_store(tmp_path)
    store.put_readings([reading])
    ids = [s.id for s in store.series("m")]

    def check() -> None:
        tables = [store.values(sid) for sid in ids]
        assert [t.value(0) for t in tables] == ["12A4", None, None, 1.2345]
        assert [int(t.flags[0]) for t in tables] == [1, 1, 3, 0]
        assert tables[3].as_float()[0] == pytest.approx(1.2345)

    check()
    compact_now(store)
    assert store.stats().rows_waiting == 0
    check()
