"""EN 13757-3 records: data types, VIF tables, headers, the array and Python views."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest

from mbusgw.core import RECORD_DTYPE, DecodeError, Header, decode, decode_application
from mbusgw.core.units import Flag, Quantity, Unit, ValueKind


def long_frame(ci: int, data: bytes, control: int = 0x08, address: int = 1) -> bytes:
    body = bytes((control, address, ci)) + data
    length = len(body)
    return bytes((0x68, length, length, 0x68)) + body + bytes((sum(body) & 0xFF, 0x16))


# identification 12345678, manufacturer "ABC", version 1, medium water, access 0x2A, status 0
HEADER = bytes.fromhex("78563412 4304 01 07 2A 00 0000")


def one(records: str, ci: int = 0x72):
    telegram = decode(long_frame(ci, HEADER + bytes.fromhex(records)))
    assert len(telegram.records) == 1
    return telegram.records[0], telegram.array[0]


def test_header_fields() -> None:
    telegram = decode(long_frame(0x72, HEADER + bytes.fromhex("0413 39300000")))
    header = telegram.header
    assert (header.id, header.manufacturer, header.version, header.medium) == (
        "12345678",
        "ABC",
        1,
        7,
    )
    assert (header.access_number, header.status, header.signature, header.ci) == (42, 0, 0, 0x72)
    assert header.medium_name == "water"


def test_integer_volume_is_exact_and_scaled_to_m3() -> None:
    record, row = one("0413 39300000")  # 12345 litres
    assert record.value == Decimal("12.345")
    assert (record.quantity, record.unit) == ("volume", "m³")
    assert (row["mantissa"], row["exponent"]) == (12345, -3)
    assert row["quantity"] == Quantity.VOLUME and row["unit"] == Unit.M3
    assert row["kind"] == ValueKind.DECIMAL


def test_array_dtype_and_offsets_point_into_payload() -> None:
    frame = long_frame(0x72, HEADER + bytes.fromhex("0413 39300000"))
    telegram = decode(frame)
    row = telegram.array[0]
    assert telegram.array.dtype == RECORD_DTYPE
    assert telegram.payload is frame or telegram.payload == frame
    start, length = row["difvif_offset"], row["difvif_length"]
    assert frame[start : start + length] == b"\x04\x13"
    start, length = row["data_offset"], row["data_length"]
    assert frame[start : start + length] == bytes.fromhex("39300000")


def test_date_time_type_f_and_g() -> None:
    record, row = one("046D 190F8A17")
    assert record.value == dt.datetime(2012, 7, 10, 15, 25)
    assert row["kind"] == ValueKind.DATETIME
    assert row["mantissa"] == int(dt.datetime(2012, 7, 10, 15, 25, tzinfo=dt.UTC).timestamp())
    record, _ = one("026C 0000")
    assert record.invalid and record.value is None


def test_application_layer_with_wireless_header() -> None:
    given = Header(id="87654321", manufacturer="XYZ", version=3, medium=7)
    telegram = decode_application(0x7A, bytes.fromhex("2A 00 0000 0413 39300000"), header=given)
    assert telegram.header.id == "87654321"
    assert telegram.header.access_number == 42
    assert telegram.records[0].value == Decimal("12.345")
    assert telegram.array["data_offset"][0] == 6


def test_truncated_record_raises_with_offset() -> None:
    with pytest.raises(DecodeError) as info:
        decode(long_frame(0x72, HEADER + bytes.fromhex("0413 3930")))
    assert info.value.offset == 7 + 12 + 4


def test_empty_telegram_has_empty_array() -> None:
    telegram = decode(long_frame(0x72, HEADER))
    assert telegram.records == []
    assert telegram.array.shape == (0,)
    assert isinstance(telegram.array, np.ndarray)
    assert not (telegram.array["flags"] & Flag.INVALID).any()
