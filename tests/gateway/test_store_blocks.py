"""Day blocks: exact round trips, merging late rows, and corrupt bytes as ``StoreCorrupt``."""

from __future__ import annotations

import contextlib
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storekit import ENERGY, T0, heat_reading

from mbusgw.gateway.errors import StoreCorrupt
from mbusgw.gateway.store.blocks import (
    block_value_count,
    columns_from_rows,
    decode_block,
    decode_block_series,
    encode_block,
    merge_columns,
)
from mbusgw.gateway.store.model import NO_TIME, ReadingStatus, StoredReading
from mbusgw.gateway.store.rows import decode_row, encode_row


def rows_of(readings: list[StoredReading], ids: list[int] | None = None) -> list:
    rows = []
    for reading in readings:
        series = np.array(ids or range(1, len(reading.series) + 1), np.uint32)
        rows.append(decode_row(encode_row(reading, series, reading.status_byte or -1)))
    return rows


def day_of_readings() -> list[StoredReading]:
    readings = [heat_reading("m", i, status_byte=i % 3) for i in range(96)]
    readings[10] = StoredReading(
        "m",
        T0 + 10 * 900 + 3,
        status=ReadingStatus.NO_RESPONSE,
        error="no answer",
        retries=2,
        duration_ms=1500,
    )
    readings[20].meter_time = None
    return readings


def assert_same(a, b) -> None:
    for name in ("received_at", "meter_time", "status", "retries", "duration_ms", "status_byte"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    assert a.errors == b.errors
    assert a.series.keys() == b.series.keys()
    for sid, column in a.series.items():
        other = b.series[sid]
        for name in ("rows", "kind", "exponent", "mantissa"):
            assert getattr(column, name).tolist() == getattr(other, name).tolist(), (sid, name)
        assert column.blobs == other.blobs


def test_a_day_round_trips_and_single_series_reads_match() -> None:
    columns = columns_from_rows(rows_of(day_of_readings()))
    block = encode_block(columns)
    decoded = decode_block(block)
    assert_same(columns, decoded)
    assert decoded.meter_time[20] == NO_TIME and decoded.errors[10] == "no answer"
    received, meter_time, column = decode_block_series(block, 1)
    assert len(received) == 95 and 10 * 900 + T0 + 3 not in received.tolist()
    assert column.mantissa.tolist() == [12_000 + 3 * i for i in range(96) if i != 10]
    assert decode_block_series(block, 99) is None
    assert block_value_count(block) == (96, 95 * 4)
    # a heat meter's day: about a byte per value, text included
    assert len(block) < 96 * 4 * 2


def test_merging_late_rows_keeps_time_order() -> None:
    early = columns_from_rows(rows_of([heat_reading("m", i) for i in range(0, 96, 2)]))
    late = columns_from_rows(rows_of([heat_reading("m", i) for i in range(1, 96, 2)]))
    merged = merge_columns(early, late)
    whole = columns_from_rows(rows_of([heat_reading("m", i) for i in range(96)]))
    assert_same(merged, whole)


def test_rows_of_different_series_sets() -> None:
    a = StoredReading.of("m", T0, [(ENERGY, 1)])
    b = heat_reading("m", 1)
    columns = columns_from_rows(rows_of([a], [7]) + rows_of([b]))
    assert_same(decode_block(encode_block(columns)), columns)
    assert columns.series[7].rows.tolist() == [0]


@pytest.mark.property
@settings(max_examples=200)
@given(st.data())
def test_corrupt_blocks_raise_store_corrupt_only(data) -> None:
    block = bytearray(encode_block(columns_from_rows(rows_of(day_of_readings()[:20]))))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(block) - 1))
        block[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(block)))
    damaged = bytes(block[:cut])
    if len(damaged) >= 5 and data.draw(st.booleans()):
        # also feed the parser damage that the checksum would not have caught
        damaged = damaged[:1] + struct.pack("<I", zlib.crc32(damaged[5:])) + damaged[5:]
    for read in (decode_block, lambda b: decode_block_series(b, 2), block_value_count):
        with contextlib.suppress(StoreCorrupt):
            read(damaged)


def test_a_flipped_bit_is_caught_by_the_checksum() -> None:
    block = bytearray(encode_block(columns_from_rows(rows_of(day_of_readings()[:5]))))
    block[-1] ^= 0x01
    with pytest.raises(StoreCorrupt, match="checksum"):
        decode_block(bytes(block))
