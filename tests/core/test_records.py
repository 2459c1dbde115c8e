"""EN 13757-3 records: data types, VIF tables, headers, the array and Python views."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from mbusgw.core import (
    RECORD_DTYPE,
    ChecksumError,
    DecodeError,
    FrameError,
    Header,
    UnsupportedError,
    decode,
    decode_application,
)
from mbusgw.core.units import Flag, Quantity, Unit, ValueKind

TOOLS = Path(__file__).resolve().parents[2] / "tools"


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


def values(records: str, ci: int = 0x72) -> list:
    return [r.value for r in decode(long_frame(ci, HEADER + bytes.fromhex(records))).records]


@pytest.mark.parametrize(
    ("records", "value"),
    [
        ("0113 FB", Decimal("-0.005")),  # int8, negative
        ("0213 3930", Decimal("12.345")),  # int16
        ("0313 FFFFFF", Decimal("-0.001")),  # int24, negative
        ("0613 010000000000", Decimal("0.001")),  # int48
        ("0703 FFFFFFFFFFFFFF7F", 2**63 - 1),  # int64 in Wh, exact
        ("0903 99", 99),  # BCD 2 digits
        ("0A03 12F0", -12),  # BCD 4 digits, negative (F in the top nibble)
        ("0B03 563412", 123456),  # BCD 6
        ("0C03 78563412", 12345678),  # BCD 8
        ("0E03 123456789012", 129078563412),  # BCD 12
        ("0D13 C2 3412", Decimal("1.234")),  # LVAR positive BCD
        ("0D13 D2 3412", Decimal("-1.234")),  # LVAR negative BCD
        ("0D13 E2 3412", Decimal("4.660")),  # LVAR binary integer
        ("0DFD11 05 6F6C6C6548", "Hello"),  # LVAR text, reversed on the wire
    ],
)
def test_data_types(records: str, value: object) -> None:
    assert values(records) == [value]
    assert type(values(records)[0]) is type(value)


def test_real32_is_the_only_float() -> None:
    (temperature,) = values("055B 0000C841")
    assert temperature == 25.0 and isinstance(temperature, float)
    record, row = one("0513 0000803F")
    assert record.value == pytest.approx(0.001)
    assert (row["kind"], row["real"], row["exponent"]) == (ValueKind.REAL, 1.0, -3)


def test_bcd_with_hex_digits_is_an_error_state_value() -> None:
    record, row = one("0C03 AA000000")
    assert record.kind == "bcd_error" and record.invalid
    assert record.value == "000000AA"
    assert row["mantissa"] == 0xAA


@pytest.mark.parametrize(
    ("records", "value"),
    [
        ("0D13 E9 010000000000000000", Decimal("0.001")),  # 9 bytes, upper byte repeats the sign
        ("0D13 EF " + "FF" * 15, Decimal("-0.001")),  # 15 bytes
        ("0D03 F0 39300000" + "00" * 12, 12345),  # 4*(F0-EC) = 16 bytes
        ("0D03 F4 02" + "00" * 31, 2),  # 32 bytes
        ("0D03 F5 03" + "00" * 47, 3),  # 48 bytes
        ("0D03 F6 FE" + "FF" * 63, -2),  # 64 bytes
    ],
)
def test_binary_lvar_of_any_width_is_an_exact_number(records: str, value: object) -> None:
    telegram = decode(long_frame(0x72, HEADER + bytes.fromhex(records + "0113 05")))
    record, row = telegram.records[0], telegram.array[0]
    assert record.value == value and type(record.value) is type(value)
    assert record.kind == "decimal" and not record.invalid
    assert row["data_length"] == len(bytes.fromhex(records)) - 3
    assert telegram.records[1].value == Decimal("0.005")  # the next record is where it should be


def test_binary_lvar_wider_than_64_bits_is_a_flagged_real() -> None:
    record, row = one("0D03 E9 000000000000000001")  # 2**64 Wh
    assert record.value == 2.0**64 and record.kind == "real"
    assert row["flags"] & Flag.SCALE_OVERFLOW
    record, _ = one("0D03 F0 " + "00" * 15 + "80")  # -2**127
    assert record.value == -(2.0**127)


def test_binary_lvar_msb_first() -> None:
    record, _ = one("0D03 F0 " + "00" * 14 + "3039", ci=0x76)
    assert record.value == 12345


def test_manufacturer_vif_data_is_bytes_never_text() -> None:
    telegram = decode(long_frame(0x72, HEADER + bytes.fromhex("0DFF5F 04 0001FF41")))
    (record,) = telegram.records
    assert record.kind == "bytes" and record.value == bytes.fromhex("0001FF41")  # wire order
    assert record.to_dict()["value"] == "0001ff41"


def test_reserved_lvar_and_dif_raise() -> None:
    with pytest.raises(DecodeError, match="reserved LVAR 0xFB"):
        values("0D13 FB")
    # EN 13757-3:2018 table 5 ends the binary numbers at 0xF6
    with pytest.raises(DecodeError, match="reserved LVAR 0xF7"):
        values("0D13 F7" + "00" * 44)
    with pytest.raises(DecodeError, match="reserved DIF 0x3F"):
        values("3F")


@pytest.mark.parametrize(
    ("records", "value", "invalid", "summer"),
    [
        ("026C 8A17", dt.date(2012, 7, 10), False, False),  # type G
        ("046D 190F8A17", dt.datetime(2012, 7, 10, 15, 25), False, False),  # type F
        ("046D 990F8A17", dt.datetime(2012, 7, 10, 15, 25), True, False),  # F, IV bit
        ("046D 198F8A17", dt.datetime(2012, 7, 10, 15, 25), False, True),  # F, summer time
        ("046D 000021A1", dt.datetime(1981, 1, 1), False, False),  # F, year 81 -> 1981
        ("046D 00002A0D", None, True, False),  # F, 13th month: no valid date
        ("046D 0020A101", dt.datetime(2005, 1, 1), False, False),  # F, hundred-year bits 1
        ("066D 1E190F8A1700", dt.datetime(2012, 7, 10, 15, 25, 30), False, False),  # type I
        ("036D 1E190F", dt.time(15, 25, 30), False, False),  # type J
        ("04FD30 190F8A17", dt.datetime(2012, 7, 10, 15, 25), False, False),  # tariff start
        ("04AD6F 190F8A17", dt.datetime(2012, 7, 10, 15, 25), False, False),  # date-of VIFE
        ("026C 0000", None, True, False),  # no valid date
    ],
)
def test_dates(records: str, value: object, invalid: bool, summer: bool) -> None:
    record, _ = one(records)
    if value is not None:
        assert record.value == value and type(record.value) is type(value)
    assert record.invalid == invalid and record.summer_time == summer


def test_dates_in_the_array_are_local_seconds_since_1970() -> None:
    _, row = one("026C 8A17")
    assert (row["kind"], row["mantissa"]) == (ValueKind.DATE, 15531 * 86400)
    _, row = one("036D 1E190F")
    assert (row["kind"], row["mantissa"]) == (ValueKind.TIME, 15 * 3600 + 25 * 60 + 30)


def test_dife_chain_storage_tariff_subunit() -> None:
    record, row = one("CC 93 42 13 78563412")
    assert (record.storage, record.tariff, record.subunit) == (71, 1, 2)
    assert row["difvif_length"] == 4


def test_too_many_difes_and_vifes() -> None:
    with pytest.raises(DecodeError, match="more than 10 DIFEs"):
        values("8C" + "80" * 10 + "00 13 00000000")
    with pytest.raises(DecodeError, match="more than 10 VIFEs"):
        values("0C 93" + "A2" * 10 + "22 00000000")


def test_function_field() -> None:
    telegram = decode(long_frame(0x72, HEADER + bytes.fromhex("1413 01000000 2413 02000000")))
    assert [r.function for r in telegram.records] == ["maximum", "minimum"]
    record, _ = one("3413 03000000")
    assert record.function == "error_state"


def test_idle_fillers_are_skipped() -> None:
    assert values("2F2F 0413 39300000 2F 0213 0100 2F2F") == [Decimal("12.345"), Decimal("0.001")]


def test_manufacturer_data_and_more_records_follow() -> None:
    telegram = decode(long_frame(0x72, HEADER + bytes.fromhex("0213 0100 0F 0102FF")))
    assert telegram.manufacturer_data == b"\x01\x02\xff"
    assert not telegram.more_records_follow
    assert telegram.records[-1].function == "manufacturer_specific"
    assert telegram.records[-1].value == b"\x01\x02\xff"
    assert telegram.to_dict()["records"][-1]["value"] == "0102ff"
    telegram = decode(long_frame(0x72, HEADER + bytes.fromhex("1F")))
    assert telegram.more_records_follow and telegram.manufacturer_data == b""
    assert telegram.to_dict()["more_records_follow"] is True


@pytest.mark.parametrize(
    ("records", "quantity", "unit", "value"),
    [
        ("04FB00 01000000", "energy", "Wh", 100000),  # 0.1 MWh
        ("04FB09 01000000", "energy", "J", 10**9),  # 1 GJ
        ("02FB1A 2502", "relative_humidity", "%", Decimal("54.9")),
        ("02FD48 E608", "voltage", "V", Decimal("227.8")),
        ("02FD59 0A00", "current", "A", Decimal("0.010")),
        ("01FD17 04", "error_flags", "", 4),
        ("0221 0A00", "on_time", "s", 600),  # minutes, exactly in seconds
        ("0240 0100", "volume_flow", "m³/h", Decimal("0.0000060")),  # m³/min
        ("022B 0100", "power", "W", 1),
        ("0233 0100", "power", "J/h", 1000),
        ("0263 0100", "temperature_difference", "K", 1),
        ("026A 0100", "pressure", "bar", Decimal("0.1")),
        ("016E 07", "hca", "HCA", 7),
        ("0C78 78563412", "fabrication_number", "", 12345678),
        ("01FD74 0A", "battery_remaining", "s", 864000),
        ("01FD6E 02", "battery_operating_time", "month", 2),
    ],
)
def test_vif_tables(records: str, quantity: str, unit: str, value: object) -> None:
    record, _ = one(records)
    assert (record.quantity, record.unit, record.value) == (quantity, unit, value)


def test_scaling_that_would_overflow_is_flagged() -> None:
    record, row = one("0723 FFFFFFFFFFFFFF7F")
    assert (record.unit, record.value) == ("d", 2**63 - 1)  # days, exact
    assert row["flags"] & Flag.SCALE_OVERFLOW
    record, row = one("0748 FFFFFFFFFFFFFF7F")  # m³/s: no exact m³/h, so a float
    assert (record.unit, record.kind) == ("m³/h", "real")
    assert record.value == pytest.approx((2**63 - 1) * 3600 * 1e-9)
    assert row["flags"] & Flag.SCALE_OVERFLOW


@pytest.mark.parametrize("records", ["016F 05", "017B 05", "01FD7C 05", "01FB3F 05"])
def test_unknown_codes_decode_to_a_record_that_says_so(records: str) -> None:
    telegram = decode(long_frame(0x72, HEADER + bytes.fromhex(records + " 0213 0100")))
    unknown, volume = telegram.records
    assert unknown.quantity == "unknown" and unknown.value == 5
    assert volume.value == Decimal("0.001")


@pytest.mark.parametrize(
    ("records", "value", "modifiers", "flags"),
    [
        ("0493 74 01000000", Decimal("0.00001"), (), 0),  # x 10^(4-6)
        ("0493 7D 01000000", 1, (), 0),  # x 1000
        ("0493 22 01000000", Decimal("0.001"), ("per_hour",), 0),
        ("0493 78 01000000", Decimal("0.000001"), ("additive_correction",), 0),
        ("0493 3B 01000000", Decimal("0.001"), ("positive_accumulation",), 0),
        ("04FDC8 FC01 01000000", Decimal("0.1"), ("at_phase_l1",), 0),
        ("0493 FF 12 01000000", Decimal("0.001"), (), Flag.MANUFACTURER_VIFE),
        (
            "0493 A2 BB 3E 01000000",
            Decimal("0.001"),
            ("per_hour", "positive_accumulation"),
            Flag.MORE_MODIFIERS,
        ),
    ],
)
def test_combinable_vifes(records: str, value: object, modifiers: tuple, flags: int) -> None:
    record, row = one(records)
    assert record.value == value
    assert record.modifiers == modifiers
    assert row["flags"] == flags


def test_record_error_vife() -> None:
    record, row = one("0493 15 00000000")
    assert record.record_error == "no data available"
    assert row["record_error"] == 0x15
    assert record.to_dict()["record_error"] == "no data available"


def test_duration_and_count_vifes_replace_the_unit() -> None:
    record, _ = one("0293 52 0200")  # duration of first lower limit exceed, hours
    assert (record.quantity, record.unit, record.value) == ("volume", "s", 7200)
    assert record.modifiers == ("lower_limit_first_duration",)
    record, _ = one("0293 41 0300")  # number of lower limit exceeds
    assert (record.unit, record.value) == ("", 3)


def test_plain_text_vif_with_scale() -> None:
    record, row = one("02FC 03 485225 74 2215")
    assert (record.quantity, record.unit, record.value) == ("plain_text", "%RH", Decimal("54.10"))
    assert row["unit"] == Unit.PLAIN_TEXT and row["text_length"] == 3


def test_manufacturer_vif_keeps_its_vifes_opaque() -> None:
    record, row = one("02FF 20 0100")
    assert record.quantity == "manufacturer_specific" and record.value == 1
    assert record.modifiers == () and row["flags"] & Flag.MANUFACTURER_VIFE


def test_global_readout_dif() -> None:
    record, _ = one("7F")
    assert record.quantity == "any_vif" and record.value is None


def test_msb_first_ci_0x76() -> None:
    header = bytes.fromhex("12345678 0443 01 07 2A 00 0000")
    telegram = decode(
        long_frame(0x76, header + bytes.fromhex("0413 00003039 0D7C 02 4142 02 4344"))
    )
    assert (telegram.header.id, telegram.header.manufacturer) == ("12345678", "ABC")
    volume, text = telegram.records
    assert volume.value == Decimal("12.345")
    assert (text.unit, text.value) == ("AB", "CD")  # not reversed when sent MSB first


def test_ci_without_header_and_short_header() -> None:
    telegram = decode(long_frame(0x78, bytes.fromhex("0413 39300000")))
    assert telegram.header.id is None and telegram.records[0].value == Decimal("12.345")
    telegram = decode_application(0x7A, bytes.fromhex("2A 00 0000 0413 39300000"))
    assert telegram.header.id is None and telegram.header.access_number == 42


def test_application_error_and_alarm() -> None:
    assert decode(long_frame(0x70, b"")).error == (0, "unspecified error")
    telegram = decode(long_frame(0x70, b"\x08"))
    assert telegram.error == (8, "application busy")
    assert telegram.to_dict()["error"] == {"code": 8, "text": "application busy"}
    telegram = decode(long_frame(0x71, b"\x05"))
    assert telegram.alarm == 5 and telegram.records == []


def test_unknown_ci_is_unsupported_with_offset() -> None:
    with pytest.raises(UnsupportedError) as info:
        decode(long_frame(0x99, b"\x01"))
    assert info.value.offset == 6


def test_fixed_data_structure() -> None:
    data = bytes.fromhex("93929190 10 00 0569 31650000 69000000")
    telegram = decode(long_frame(0x73, data))
    assert (telegram.header.id, telegram.header.medium, telegram.header.access_number) == (
        "90919293",
        4,
        16,
    )
    energy, volume = telegram.records
    assert (energy.quantity, energy.unit, energy.value, energy.storage) == (
        "energy",
        "Wh",
        6531000,
        0,
    )
    assert (volume.quantity, volume.value) == ("volume", Decimal("0.069"))
    stored_binary = bytes.fromhex("93929190 10 C0 0569 FFFFFFFF 69000000")
    energy, volume = decode(long_frame(0x73, stored_binary)).records
    assert (energy.value, energy.storage, volume.value) == (-1000, 1, Decimal("0.105"))


def test_fixed_data_structure_msb_first() -> None:
    data = bytes.fromhex("90919293 10 00 6905 00006531 00000069")
    telegram = decode(long_frame(0x77, data))
    assert (telegram.header.id, telegram.header.medium) == ("90919293", 4)
    assert [r.value for r in telegram.records] == [6531000, Decimal("0.069")]


def test_non_bcd_identification_digits_stay_hex() -> None:
    header = bytes.fromhex("3E020005 4304 01 07 2A 00 0000")
    assert decode(long_frame(0x72, header)).header.id == "0500023E"


def test_framing_errors_are_typed() -> None:
    frame = bytearray(long_frame(0x72, HEADER))
    frame[-2] ^= 1
    with pytest.raises(ChecksumError):
        decode(bytes(frame))
    with pytest.raises(FrameError):
        decode(b"\xe5")
    with pytest.raises(FrameError):
        decode(b"")


def test_json_prints_decimals_exactly() -> None:
    telegram = decode(long_frame(0x72, HEADER + bytes.fromhex("0413 39300000 02FD48 E608")))
    text = telegram.to_json()
    assert '"value":12.345,' in text and '"value":227.8,' in text
    assert json.loads(text)["header"]["manufacturer"] == "ABC"


def test_generated_vif_table_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("gen_vif_table", TOOLS / "gen_vif_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.HEADER.read_text() == module.generate(), "run python tools/gen_vif_table.py"
