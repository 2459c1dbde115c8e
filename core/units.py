"""Quantities, units, value kinds and record modifiers of decoded M-Bus records.

Pure Python, shared by the decoder (whose generated VIF tables store these codes), the store and
the web. The numbers are part of the stored data: append new members, never renumber.
Names are snake_case identifiers (stable, used in JSON); ``UNIT_SYMBOLS`` and ``MEDIUM_NAMES``
give the texts people read.
"""

from __future__ import annotations

from enum import IntEnum


class ValueKind(IntEnum):
    """How a record's value is stored in the record array (see docs/core.md)."""

    NONE = 0  # no data (DIF data field 0 or 8)
    DECIMAL = 1  # exact: mantissa * 10**exponent
    REAL = 2  # IEEE 754 real32 in ``real``: real * 10**exponent
    DATE = 3  # mantissa = seconds since 1970-01-01 of the local date read as UTC
    DATETIME = 4  # mantissa = seconds since 1970-01-01T00:00 of the local time read as UTC
    TIME = 5  # mantissa = seconds since midnight (type J)
    TEXT = 6  # ASCII in the payload (reversed on the wire in LSB-first telegrams)
    BYTES = 7  # raw bytes in the payload, wire order (manufacturer data, long BCD LVAR, type K/L/M)
    BCD_ERROR = 8  # BCD with hex digits A-F: mantissa holds the nibbles, shown as hex digits


class Function(IntEnum):
    """DIF function field, plus the two special DIFs."""

    INSTANTANEOUS = 0
    MAXIMUM = 1
    MINIMUM = 2
    ERROR_STATE = 3  # value during error state
    MANUFACTURER_SPECIFIC = 4  # DIF 0x0F: the rest of the telegram is manufacturer data
    MORE_RECORDS_FOLLOW = 5  # DIF 0x1F: manufacturer data, and another telegram follows


class Flag(IntEnum):
    """Bits of a record's ``flags``."""

    INVALID = 0x01  # the meter flagged the value invalid (date IV bit, impossible date, BCD error)
    SUMMER_TIME = 0x02  # date/time in summer (daylight saving) time
    MANUFACTURER_VIFE = 0x04  # VIFE 0x7F: the remaining VIFEs are manufacturer specific
    MORE_MODIFIERS = 0x08  # more than two combinable VIFEs; see the DIF/VIF bytes
    # scaling would overflow (a duration keeps its unit, else a float), or a binary LVAR number
    # does not fit 64 bits (a float)
    SCALE_OVERFLOW = 0x10


class Unit(IntEnum):
    NONE = 0
    WH = 1
    J = 2
    M3 = 3
    KG = 4
    S = 5
    MIN = 6
    H = 7
    DAY = 8
    MONTH = 9
    YEAR = 10
    W = 11
    J_PER_H = 12
    M3_PER_H = 13
    KG_PER_H = 14
    DEG_C = 15
    K = 16
    BAR = 17
    V = 18
    A = 19
    HCA = 20
    CURRENCY = 21
    BAUD = 22
    BIT_TIMES = 23
    PERCENT = 24
    DEG_F = 25
    FT3 = 26
    US_GALLON = 27
    US_GALLON_PER_MIN = 28
    US_GALLON_PER_H = 29
    DBM = 30
    PLAIN_TEXT = 31  # the unit is the record's plain-text VIF


UNIT_SYMBOLS: dict[Unit, str] = {
    Unit.NONE: "",
    Unit.WH: "Wh",
    Unit.J: "J",
    Unit.M3: "m³",
    Unit.KG: "kg",
    Unit.S: "s",
    Unit.MIN: "min",
    Unit.H: "h",
    Unit.DAY: "d",
    Unit.MONTH: "month",
    Unit.YEAR: "year",
    Unit.W: "W",
    Unit.J_PER_H: "J/h",
    Unit.M3_PER_H: "m³/h",
    Unit.KG_PER_H: "kg/h",
    Unit.DEG_C: "°C",
    Unit.K: "K",
    Unit.BAR: "bar",
    Unit.V: "V",
    Unit.A: "A",
    Unit.HCA: "HCA",
    Unit.CURRENCY: "currency",
    Unit.BAUD: "Bd",
    Unit.BIT_TIMES: "bit times",
    Unit.PERCENT: "%",
    Unit.DEG_F: "°F",
    Unit.FT3: "ft³",
    Unit.US_GALLON: "US gal",
    Unit.US_GALLON_PER_MIN: "US gal/min",
    Unit.US_GALLON_PER_H: "US gal/h",
    Unit.DBM: "dBm",
    Unit.PLAIN_TEXT: "",
}


class Quantity(IntEnum):
    """What a record measures (from the VIF; EN 13757-3 tables 10, 12, 14)."""

    UNKNOWN = 0  # a reserved or unknown VIF code: the record says so, the telegram goes on
    ENERGY = 1
    VOLUME = 2
    MASS = 3
    ON_TIME = 4
    OPERATING_TIME = 5
    POWER = 6
    VOLUME_FLOW = 7
    MASS_FLOW = 8
    FLOW_TEMPERATURE = 9
    RETURN_TEMPERATURE = 10
    TEMPERATURE_DIFFERENCE = 11
    EXTERNAL_TEMPERATURE = 12
    PRESSURE = 13
    TIME_POINT = 14
    HCA = 15
    AVERAGING_DURATION = 16
    ACTUALITY_DURATION = 17
    FABRICATION_NUMBER = 18
    ENHANCED_IDENTIFICATION = 19
    BUS_ADDRESS = 20
    ANY_VIF = 21
    MANUFACTURER_SPECIFIC = 22
    PLAIN_TEXT = 23
    CREDIT = 24
    DEBIT = 25
    ACCESS_NUMBER = 26
    DEVICE_TYPE = 27
    MANUFACTURER = 28
    PARAMETER_SET_ID = 29
    MODEL_VERSION = 30
    HARDWARE_VERSION = 31
    FIRMWARE_VERSION = 32
    SOFTWARE_VERSION = 33
    CUSTOMER_LOCATION = 34
    CUSTOMER = 35
    ACCESS_CODE_USER = 36
    ACCESS_CODE_OPERATOR = 37
    ACCESS_CODE_SYSTEM_OPERATOR = 38
    ACCESS_CODE_DEVELOPER = 39
    PASSWORD = 40
    ERROR_FLAGS = 41
    ERROR_MASK = 42
    SECURITY_KEY = 43
    DIGITAL_OUTPUT = 44
    DIGITAL_INPUT = 45
    BAUD_RATE = 46
    RESPONSE_DELAY_TIME = 47
    RETRY = 48
    REMOTE_CONTROL = 49
    FIRST_STORAGE_NUMBER = 50
    LAST_STORAGE_NUMBER = 51
    STORAGE_BLOCK_SIZE = 52
    TARIFF_SUBUNIT_DESCRIPTOR = 53
    STORAGE_INTERVAL = 54
    OPERATOR_SPECIFIC_DATA = 55
    TIME_POINT_SECOND = 56
    DURATION_SINCE_READOUT = 57
    TARIFF_START = 58
    TARIFF_DURATION = 59
    TARIFF_PERIOD = 60
    DIMENSIONLESS = 61
    WIRELESS_CONTAINER = 62
    TRANSMISSION_PERIOD = 63
    VOLTAGE = 64
    CURRENT = 65
    RESET_COUNTER = 66
    CUMULATION_COUNTER = 67
    CONTROL_SIGNAL = 68
    DAY_OF_WEEK = 69
    WEEK_NUMBER = 70
    DAY_CHANGE_TIME = 71
    PARAMETER_ACTIVATION_STATE = 72
    SUPPLIER_INFORMATION = 73
    DURATION_SINCE_CUMULATION = 74
    BATTERY_OPERATING_TIME = 75
    BATTERY_CHANGE_TIME = 76
    RF_LEVEL = 77
    DAYLIGHT_SAVING = 78
    LISTENING_WINDOW = 79
    BATTERY_REMAINING = 80
    STOP_COUNT = 81
    MANUFACTURER_CONTAINER = 82
    RELATIVE_HUMIDITY = 83
    TEMPERATURE_LIMIT = 84
    MAX_POWER_CUMULATION_COUNT = 85
    MANUFACTURER_DATA = 86  # DIF 0x0F / 0x1F records
    TEMPERATURE = 87  # fixed data structure temperature (no flow/return distinction)


class Modifier(IntEnum):
    """Meaning of a combinable (orthogonal) VIFE, EN 13757-3 tables 15 and 16."""

    NONE = 0
    UNKNOWN = 1  # reserved combinable VIFE code
    PER_SECOND = 2
    PER_MINUTE = 3
    PER_HOUR = 4
    PER_DAY = 5
    PER_WEEK = 6
    PER_MONTH = 7
    PER_YEAR = 8
    PER_REVOLUTION = 9
    PER_INPUT_PULSE_0 = 10
    PER_INPUT_PULSE_1 = 11
    PER_OUTPUT_PULSE_0 = 12
    PER_OUTPUT_PULSE_1 = 13
    PER_LITRE = 14
    PER_M3 = 15
    PER_KG = 16
    PER_KELVIN = 17
    PER_KWH = 18
    PER_GJ = 19
    PER_KW = 20
    PER_KELVIN_LITRE = 21
    PER_VOLT = 22
    PER_AMPERE = 23
    TIMES_SECOND = 24
    TIMES_SECOND_PER_VOLT = 25
    TIMES_SECOND_PER_AMPERE = 26
    START_DATE_OF = 27
    UNCORRECTED = 28
    POSITIVE_ACCUMULATION = 29
    NEGATIVE_ACCUMULATION = 30
    NON_METRIC = 31
    AT_BASE_CONDITIONS = 32
    OBIS_DECLARATION = 33
    LOWER_LIMIT = 34
    LOWER_LIMIT_EXCEEDS = 35
    LOWER_LIMIT_FIRST_BEGIN = 36
    LOWER_LIMIT_FIRST_END = 37
    LOWER_LIMIT_LAST_BEGIN = 38
    LOWER_LIMIT_LAST_END = 39
    UPPER_LIMIT = 40
    UPPER_LIMIT_EXCEEDS = 41
    UPPER_LIMIT_FIRST_BEGIN = 42
    UPPER_LIMIT_FIRST_END = 43
    UPPER_LIMIT_LAST_BEGIN = 44
    UPPER_LIMIT_LAST_END = 45
    LOWER_LIMIT_FIRST_DURATION = 46
    LOWER_LIMIT_LAST_DURATION = 47
    UPPER_LIMIT_FIRST_DURATION = 48
    UPPER_LIMIT_LAST_DURATION = 49
    FIRST_DURATION = 50
    LAST_DURATION = 51
    DURING_LOWER_LIMIT = 52
    LEAKAGE = 53
    OVERFLOW = 54
    DURING_UPPER_LIMIT = 55
    FIRST_BEGIN = 56
    FIRST_END = 57
    LAST_BEGIN = 58
    LAST_END = 59
    ADDITIVE_CORRECTION = 60
    FUTURE_VALUE = 61
    AVERAGE = 62
    INVERSE_COMPACT_PROFILE = 63
    RELATIVE_DEVIATION = 64
    STANDARD_CONFORMANT = 65
    COMPACT_PROFILE_WITH_REGISTER = 66
    COMPACT_PROFILE = 67
    AT_PHASE_L1 = 68
    AT_PHASE_L2 = 69
    AT_PHASE_L3 = 70
    AT_NEUTRAL = 71
    BETWEEN_L1_L2 = 72
    BETWEEN_L2_L3 = 73
    BETWEEN_L3_L1 = 74
    AT_QUADRANT_Q1 = 75
    AT_QUADRANT_Q2 = 76
    AT_QUADRANT_Q3 = 77
    AT_QUADRANT_Q4 = 78
    IMPORT_EXPORT_DELTA = 79
    ABSOLUTE_ACCUMULATION = 80
    DATA_TYPE_C = 81
    DATA_TYPE_D = 82


# Record error codes carried by combinable VIFEs 0x00-0x1F in a meter's answer (table 17).
RECORD_ERRORS: dict[int, str] = {
    0x00: "none",
    0x01: "too many DIFEs",
    0x02: "storage number not implemented",
    0x03: "unit number not implemented",
    0x04: "tariff number not implemented",
    0x05: "function not implemented",
    0x06: "data class not implemented",
    0x07: "data size not implemented",
    0x0B: "too many VIFEs",
    0x0C: "illegal VIF group",
    0x0D: "illegal VIF exponent",
    0x0E: "VIF/DIF mismatch",
    0x0F: "unimplemented action",
    0x15: "no data available",
    0x16: "data overflow",
    0x17: "data underflow",
    0x18: "data error",
    0x1C: "premature end of record",
}

# Application errors of a CI 0x70 telegram (EN 13757-3 table 21).
APPLICATION_ERRORS: dict[int, str] = {
    0: "unspecified error",
    1: "unimplemented CI field",
    2: "buffer too long, truncated",
    3: "too many records",
    4: "premature end of record",
    5: "more than 10 DIFEs",
    6: "more than 10 VIFEs",
    7: "reserved",
    8: "application busy",
    9: "too many readouts",
}

# Device type (medium) byte of the header (EN 13757-7 table 12).
MEDIUM_NAMES: dict[int, str] = {
    0x00: "other",
    0x01: "oil",
    0x02: "electricity",
    0x03: "gas",
    0x04: "heat (outlet)",
    0x05: "steam",
    0x06: "warm water (30-90 °C)",
    0x07: "water",
    0x08: "heat cost allocator",
    0x09: "compressed air",
    0x0A: "cooling load meter (outlet)",
    0x0B: "cooling load meter (inlet)",
    0x0C: "heat (inlet)",
    0x0D: "heat / cooling load meter",
    0x0E: "bus / system component",
    0x0F: "unknown medium",
    0x10: "irrigation water",
    0x11: "water data logger",
    0x12: "gas data logger",
    0x13: "gas converter",
    0x14: "calorific value",
    0x15: "hot water (>= 90 °C)",
    0x16: "cold water",
    0x17: "dual register (hot/cold) water",
    0x18: "pressure",
    0x19: "A/D converter",
    0x1A: "smoke detector",
    0x1B: "room sensor",
    0x1C: "gas detector",
    0x20: "breaker (electricity)",
    0x21: "valve (gas or water)",
    0x25: "customer unit (display)",
    0x28: "waste water",
    0x29: "garbage",
    0x2A: "carbon dioxide",
    0x31: "communication controller",
    0x32: "unidirectional repeater",
    0x33: "bidirectional repeater",
    0x36: "radio converter (system side)",
    0x37: "radio converter (meter side)",
}


def medium_name(code: int | None) -> str:
    """Readable name of a device type byte ("reserved (0xNN)" when not assigned)."""
    if code is None:
        return ""
    return MEDIUM_NAMES.get(code, f"reserved (0x{code:02X})")


def quantity_name(code: int) -> str:
    try:
        return Quantity(code).name.lower()
    except ValueError:
        return f"quantity_{code}"


def unit_symbol(code: int) -> str:
    try:
        return UNIT_SYMBOLS[Unit(code)]
    except ValueError:
        return f"unit_{code}"
