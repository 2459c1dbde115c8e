"""Conformance with libmbus' public test vectors (tests/data/libmbus, BSD-3-Clause, see README).

Every public frame is decoded and its header and every record compared with libmbus' expected
XML: function, storage, tariff, subunit, quantity + unit, and the value (exact for integers and
BCD, 1e-6 relative for reals, as strings for dates and text, wire-order bytes for manufacturer
data). Where libmbus is wrong, ``EXCEPTIONS`` says so per record with the reason; the test fails
if an exception no longer applies, so the list cannot go stale.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from mbusgw.core import DecodeError, FrameError, Telegram, decode
from mbusgw.core.units import APPLICATION_ERRORS

DATA = Path(__file__).parent.parent / "data" / "libmbus"
FRAMES = sorted((DATA / "test-frames").glob("*.hex"))

# libmbus' text for the medium byte (the ones in the corpus).
MEDIUM = {
    "Other": 0x00,
    "Oil": 0x01,
    "Electricity": 0x02,
    "Gas": 0x03,
    "Heat: Outlet": 0x04,
    "Heat": 0x04,
    "Warm water (30-90°C)": 0x06,
    "Water": 0x07,
    "Heat Cost Allocator": 0x08,
    "Heat: Inlet": 0x0C,
    "Heat / Cooling load meter": 0x0D,
    "Cold water": 0x16,
    "Breaker: Electricity": 0x20,
}

FUNCTION = {
    "Instantaneous value": "instantaneous",
    "Maximum value": "maximum",
    "Minimum value": "minimum",
    "Value during error state": "error_state",
    "Manufacturer specific": "manufacturer_specific",
    "More records follow": "more_records_follow",
    "Actual value": "instantaneous",  # fixed data structure, storage 0
    "Stored value": "instantaneous",  # fixed data structure, storage 1
}

# libmbus' normalized (Unit, Quantity) -> ours (quantity, unit). A plain-text VIF is matched
# separately: libmbus gives Unit "-" and the text as Quantity, we give quantity plain_text and
# the text as unit.
QUANTITY = {
    ("Wh", "Energy"): ("energy", "Wh"),
    ("m^3", "Volume"): ("volume", "m³"),
    ("W", "Power"): ("power", "W"),
    ("m^3/h", "Volume flow"): ("volume_flow", "m³/h"),
    ("°C", "Flow temperature"): ("flow_temperature", "°C"),
    ("°C", "Return temperature"): ("return_temperature", "°C"),
    ("°C", "External temperature"): ("external_temperature", "°C"),
    ("K", "Temperature difference"): ("temperature_difference", "K"),
    ("s", "On time"): ("on_time", "s"),
    ("s", "Operating time"): ("operating_time", "s"),
    ("s", "Averaging Duration"): ("averaging_duration", "s"),
    ("s", "Actuality Duration"): ("actuality_duration", "s"),
    ("V", "Voltage"): ("voltage", "V"),
    ("A", "Current"): ("current", "A"),
    ("Units for H.C.A.", "H.C.A."): ("hca", "HCA"),
    ("-", "Time point (date)"): ("time_point", ""),
    ("-", "Time point (date & time)"): ("time_point", ""),
    ("", "Fabrication No"): ("fabrication_number", ""),
    ("", "Manufacturer specific"): ("manufacturer_specific", ""),
    ("", "Error flags"): ("error_flags", ""),
    ("", "Software version"): ("software_version", ""),
    ("", "Firmware version"): ("firmware_version", ""),
    ("", "Digital Input"): ("digital_input", ""),
    ("", "Parameter set identification"): ("parameter_set_id", ""),
    ("", "Model / Version"): ("model_version", ""),
    ("", "Customer location"): ("customer_location", ""),
    ("", ""): ("manufacturer_data", ""),
    ("Reserved", "Reserved"): ("unknown", ""),
}
# Fixed data structure units (CI 0x73): libmbus text -> (quantity, unit, decimal exponent).
FIXED_UNIT = {"kWh": ("energy", "Wh", 3), "l": ("volume", "m³", -3)}

INVALID_DATE = "the meter marks this date invalid; libmbus prints it as a date anyway"
LIMIT_DURATION = (
    "VIFE 0x{:02X} makes the value the duration of a limit exceed (unit s); "
    "libmbus ignores combinable VIFEs and keeps the VIF's quantity"
)
DATE_OF = (
    "VIFE 0x6F makes the value the date/time of the end of the last such period; "
    "libmbus ignores combinable VIFEs and keeps the VIF's quantity"
)

# (stem, record index, field) -> why libmbus' expectation is wrong. Reviewed one by one.
EXCEPTIONS: dict[tuple[str, int, str], str] = {
    ("ACW_Itron-BM-plus-m", 2, "value"): "type G 00 00 (no valid date); " + INVALID_DATE,
    ("itron_bm_+m", 2, "value"): "type G 00 00 (no valid date); " + INVALID_DATE,
    ("siemens_wfh21", 3, "value"): "type G 00 00 (no valid date); " + INVALID_DATE,
    ("REL-Relay-Padpuls2", 1, "value"): (
        "type F with the IV bit set: we keep the date and flag it invalid; " + INVALID_DATE
    ),
    ("SEN_Pollustat", 12, "quantity"): LIMIT_DURATION.format(0x50),
    ("SEN_Pollustat", 13, "quantity"): LIMIT_DURATION.format(0x58),
    ("landis+gyr_ultraheat_t230", 19, "quantity"): DATE_OF,
    ("landis+gyr_ultraheat_t230", 19, "value"): DATE_OF + " (00000000: no valid date)",
    ("landis+gyr_ultraheat_t230", 20, "quantity"): DATE_OF,
    ("landis+gyr_ultraheat_t230", 20, "value"): DATE_OF + " (00000000: no valid date)",
    ("landis+gyr_ultraheat_t230", 21, "quantity"): DATE_OF,
    ("landis+gyr_ultraheat_t230", 21, "value"): DATE_OF + " (type F 2011-08-26T20:50)",
    ("landis+gyr_ultraheat_t230", 22, "quantity"): DATE_OF,
    ("landis+gyr_ultraheat_t230", 22, "value"): DATE_OF + " (type F 2011-08-09T11:43)",
}


@dataclass
class Mismatch:
    field: str
    ours: object
    libmbus: object


def read_hex(path: Path) -> bytes:
    return bytes(int(token, 16) for token in path.read_text().split())


def read_xml(path: Path) -> ET.Element:
    # The files declare ISO-8859-1 but hold UTF-8 (see the README): decode, drop the declaration.
    text = path.read_bytes().decode("utf-8")
    return ET.fromstring(text[text.index("?>") + 2 :])


def field(element: ET.Element, name: str, default: str = "") -> str:
    found = element.find(name)
    return default if found is None or found.text is None else found.text


def compare_header(telegram: Telegram, info: ET.Element) -> list[Mismatch]:
    header = telegram.header
    out = []
    expected = {
        "id": field(info, "Id").zfill(8),  # non-BCD digits stay hex letters
        "access_number": int(field(info, "AccessNumber")),
        "status": int(field(info, "Status"), 16),
        "medium": MEDIUM[field(info, "Medium")],
    }
    ours = {
        "id": header.id,
        "access_number": header.access_number,
        "status": header.status,
        "medium": header.medium,
    }
    if info.find("Manufacturer") is not None:
        expected |= {
            "manufacturer": field(info, "Manufacturer"),
            "version": int(field(info, "Version")),
            "signature": int(field(info, "Signature"), 16),
        }
        ours |= {
            "manufacturer": header.manufacturer,
            "version": header.version,
            "signature": header.signature,
        }
    for key, value in expected.items():
        if ours[key] != value:
            out.append(Mismatch(f"header.{key}", ours[key], value))
    return out


def compare_value(record, row, raw: str, norm: str) -> Mismatch | None:
    kind = record.kind
    if kind == "bytes":
        expected = bytes.fromhex(raw)
        return None if record.value == expected else Mismatch("value", record.value, expected)
    if kind in ("date", "datetime"):
        ours = None if record.value is None else record.value.isoformat()
        expected = norm.removesuffix("Z")
        if ours == expected and not record.invalid:
            return None
        return Mismatch("value", (ours, "invalid" if record.invalid else "valid"), expected)
    if kind == "text":
        return None if record.value == raw else Mismatch("value", record.value, raw)
    if kind == "bcd_error":
        ours = record.value.lstrip("0") or "0"
        return None if ours == raw else Mismatch("value", record.value, raw)
    if kind == "none":
        return None if raw == "" else Mismatch("value", None, raw)
    if kind == "real":
        ok = math.isclose(record.value, float(norm), rel_tol=1e-6, abs_tol=1e-6)
        return None if ok else Mismatch("value", record.value, norm)
    # exact decimal: the raw integer, times an exact unit factor, times a power of ten
    mantissa, raw_int = int(row["mantissa"]), int(raw)
    factors = (1, 60, 3600, 86400)
    exact = mantissa == 0 == raw_int or (raw_int and mantissa in (raw_int * f for f in factors))
    scaled = math.isclose(float(record.value), float(norm), rel_tol=1e-12, abs_tol=5e-7)
    if exact and scaled:
        return None
    return Mismatch("value", (mantissa, record.value), (raw, norm))


def compare_record(record, row, raw_xml: ET.Element, norm_xml: ET.Element) -> list[Mismatch]:
    out = []
    function = field(norm_xml, "Function")
    if FUNCTION[function] != record.function:
        out.append(Mismatch("function", record.function, function))
    storage = 1 if function == "Stored value" else int(field(norm_xml, "StorageNumber", "0"))
    for name, ours, expected in (
        ("storage", record.storage, storage),
        ("tariff", record.tariff, int(field(norm_xml, "Tariff", "0"))),
        ("subunit", record.subunit, int(field(norm_xml, "Device", "0"))),
    ):
        if ours != expected:
            out.append(Mismatch(name, ours, expected))
    unit, quantity = field(norm_xml, "Unit"), field(norm_xml, "Quantity")
    if function in ("Actual value", "Stored value"):
        expected_quantity, expected_unit, exponent = FIXED_UNIT[unit]
        if row["exponent"] != exponent:
            out.append(Mismatch("exponent", int(row["exponent"]), exponent))
    elif unit == "-" and (unit, quantity) not in QUANTITY:
        expected_quantity, expected_unit = "plain_text", quantity
    else:
        expected_quantity, expected_unit = QUANTITY[(unit, quantity)]
    if (record.quantity, record.unit) != (expected_quantity, expected_unit):
        out.append(Mismatch("quantity", (record.quantity, record.unit), (quantity, unit)))
    raw, norm = field(raw_xml, "Value"), field(norm_xml, "Value")
    if function in ("Actual value", "Stored value"):
        # libmbus does not scale fixed data structure values in its normalized view
        norm = str(Decimal(raw).scaleb(exponent))
    mismatch = compare_value(record, row, raw, norm)
    if mismatch:
        out.append(mismatch)
    return out


def mismatches(path: Path) -> tuple[int, dict[tuple[str, int, str], Mismatch]]:
    stem = path.name.removesuffix(".hex")
    telegram = decode(read_hex(path))
    raw = read_xml(path.with_name(stem + ".xml"))
    norm = read_xml(path.with_name(stem + ".norm.xml"))
    found = {
        (stem, -1, m.field): m for m in compare_header(telegram, norm.find("SlaveInformation"))
    }
    raw_records, norm_records = raw.findall("DataRecord"), norm.findall("DataRecord")
    assert len(telegram.records) == len(norm_records) == len(raw_records), stem
    for index, record in enumerate(telegram.records):
        row = telegram.array[index]
        for m in compare_record(record, row, raw_records[index], norm_records[index]):
            found[(stem, index, m.field)] = m
    return len(telegram.records), found


@pytest.mark.parametrize("path", FRAMES, ids=lambda p: p.stem)
def test_frame_matches_libmbus(path: Path) -> None:
    _, found = mismatches(path)
    stem = path.name.removesuffix(".hex")
    unexplained = {key: m for key, m in found.items() if key not in EXCEPTIONS}
    stale = [key for key in EXCEPTIONS if key[0] == stem and key not in found]
    assert not unexplained, f"records differ from libmbus: {unexplained}"
    assert not stale, f"exceptions that no longer apply: {stale}"


def test_public_half_is_complete_and_counted() -> None:
    assert len(FRAMES) == 38
    total = equal = 0
    for path in FRAMES:
        count, found = mismatches(path)
        differing = {index for (_, index, _) in found if index >= 0}
        total += count
        equal += count - len(differing)
    # every record is either equal or on the reviewed exception list
    records_excepted = {(stem, index) for (stem, index, _) in EXCEPTIONS if index >= 0}
    # the README's 445 variable-data records, plus the two of the fixed data structure frame
    assert total == 447
    assert equal + len(records_excepted) == total
    assert (equal, len(records_excepted)) == (437, 10)


ERROR_FRAMES = sorted((DATA / "error-frames").glob("*.hex"))
LIBMBUS_ERROR_TEXT = {
    text: code
    for code, text in enumerate(
        [
            "Unspecified error",
            "Unimplemented CI-Field",
            "Buffer too long, truncated",
            "Too many records",
            "Premature end of record",
            "More than 10 DIFE´s",
            "More than 10 VIFE´s",
            "Reserved",
            "Application busy",
            "Too many readouts",
        ]
    )
}


@pytest.mark.parametrize("path", ERROR_FRAMES, ids=lambda p: p.stem)
def test_error_frames(path: Path) -> None:
    expected_xml = path.with_suffix(".xml")
    frame = read_hex(path)
    if expected_xml.exists():
        telegram = decode(frame)
        text = field(read_xml(expected_xml).find("SlaveInformation"), "Error")
        code = LIBMBUS_ERROR_TEXT[text]
        assert telegram.error == (code, APPLICATION_ERRORS[code])
        assert telegram.records == [] and telegram.to_dict()["error"]["code"] == code
    else:
        with pytest.raises(DecodeError) as info:
            decode(frame)
        assert 7 <= info.value.offset <= len(frame) - 2


UNSUPPORTED = {
    "invalid_length": FrameError,
    "invalid_length2": DecodeError,
    "manual_frame1": FrameError,
}


@pytest.mark.parametrize(
    "path", sorted((DATA / "unsupported-frames").glob("*.hex")), ids=lambda p: p.stem
)
def test_unsupported_frames(path: Path) -> None:
    frame = bytes(int(token, 16) for token in path.read_text().split())
    error = UNSUPPORTED.get(path.stem)
    if error is not None:
        with pytest.raises(error):
            decode(frame)
        return
    telegram = decode(frame)
    if path.stem == "svm_f22_telegram2":
        assert telegram.more_records_follow
        assert len(telegram.manufacturer_data) == 206
    else:
        # SND_UD with CI 0x51 (data send): the records the master writes, without a header
        assert telegram.ci == 0x51 and telegram.records
        assert telegram.header.id is None
