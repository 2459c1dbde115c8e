"""How one meter value becomes Modbus registers: data types, exact scaling, saturation, word order.

The arithmetic is exact: ``value = mantissa × 10**exponent × constant`` is a fraction, never a
float, until the last step. Integer types round half away from zero and clamp to the type's range
without its no-value marker (saturation); float types take the nearest float and clamp to the
largest finite float of the type. A missing or invalid value is the type's marker:

=========  =====================  ===========================
type       marker (no value)      range of real values
=========  =====================  ===========================
int16/32/64  the minimum (0x8000…)   minimum + 1 … maximum
uint16/32/64 the maximum (0xFFFF…)   0 … maximum − 1
float32/64   quiet NaN (0x7FC0…)     ± largest finite float
=========  =====================  ===========================

Registers carry their two bytes big-endian (Modbus). A value of several registers is sent most
significant word first (``big`` word order, "ABCD") or least significant first (``little``,
"CDAB"), as the service is set.
"""

from __future__ import annotations

import math
import struct
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from fractions import Fraction


class DataType(IntEnum):
    """The register data types; the numbers appear in the device block and the CSV map."""

    INT16 = 1
    UINT16 = 2
    INT32 = 3
    UINT32 = 4
    INT64 = 5
    UINT64 = 6
    FLOAT32 = 7
    FLOAT64 = 8

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def registers(self) -> int:
        return _SPECS[self].bits // 16

    @classmethod
    def from_label(cls, label: str) -> DataType:
        return cls[label.upper()]


DATA_TYPE_LABELS: tuple[str, ...] = tuple(t.label for t in DataType)
WORD_ORDERS = ("big", "little")


@dataclass(frozen=True, slots=True)
class _Spec:
    bits: int
    signed: bool
    floating: bool

    @property
    def marker(self) -> int:
        """The raw bits that mean "no value"."""
        if self.floating:
            return 0x7FC00000 if self.bits == 32 else 0x7FF8000000000000
        return 1 << (self.bits - 1) if self.signed else (1 << self.bits) - 1

    @property
    def low(self) -> int:
        return -(1 << (self.bits - 1)) + 1 if self.signed else 0

    @property
    def high(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 2


_SPECS = {
    DataType.INT16: _Spec(16, True, False),
    DataType.UINT16: _Spec(16, False, False),
    DataType.INT32: _Spec(32, True, False),
    DataType.UINT32: _Spec(32, False, False),
    DataType.INT64: _Spec(64, True, False),
    DataType.UINT64: _Spec(64, False, False),
    DataType.FLOAT32: _Spec(32, True, True),
    DataType.FLOAT64: _Spec(64, True, True),
}
_FLOAT32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]


@dataclass(frozen=True, slots=True)
class Number:
    """A meter value before scaling: exact ``mantissa × 10**exponent``, or ``real`` when the
    meter sent a float (then ``real × 10**exponent``)."""

    mantissa: int = 0
    exponent: int = 0
    real: float | None = None


ONE = Fraction(1)
MAX_CONSTANT_DIGITS = 15


def parse_constant(text: str) -> Fraction:
    """A scaling constant from its decimal text ("1000", "0.001", "3.6"); ``ValueError`` with a
    message for the settings page when it is not a usable constant."""
    try:
        number = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError(f"{text!r} is not a decimal number") from None
    if not number.is_finite() or number == 0:
        raise ValueError("must be a finite number other than 0")
    if len(number.as_tuple().digits) > MAX_CONSTANT_DIGITS:
        raise ValueError(f"at most {MAX_CONSTANT_DIGITS} significant digits")
    if not Decimal("1e-12") <= abs(number) <= Decimal("1e12"):
        raise ValueError("must be between 1e-12 and 1e12 in size")
    return Fraction(number)


def scaled(number: Number, constant: Fraction) -> Fraction | float:
    """``mantissa × 10**exponent × constant`` exactly; a float when the meter sent a float."""
    if number.real is not None:
        if not math.isfinite(number.real):
            return number.real
        return number.real * 10.0**number.exponent * float(constant)
    if number.exponent >= 0:
        return number.mantissa * 10**number.exponent * constant
    return Fraction(number.mantissa, 10**-number.exponent) * constant


def round_half_away(value: Fraction) -> int:
    magnitude = abs(value)
    whole, rest = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * rest >= magnitude.denominator:
        whole += 1
    return -whole if value < 0 else whole


def raw_bits(value: Fraction | float | None, data_type: DataType) -> int:
    """The unsigned bit pattern of ``value`` in ``data_type`` (marker for None or NaN)."""
    spec = _SPECS[data_type]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return spec.marker
    if spec.floating:
        largest = _FLOAT32_MAX if spec.bits == 32 else sys.float_info.max
        try:
            as_float = float(value)
        except OverflowError:  # a fraction beyond any float
            as_float = math.inf if value > 0 else -math.inf
        as_float = max(-largest, min(largest, as_float))
        if spec.bits == 32:
            return struct.unpack(">I", struct.pack(">f", as_float))[0]
        return struct.unpack(">Q", struct.pack(">d", as_float))[0]
    if isinstance(value, float):
        if math.isinf(value):
            whole = spec.high if value > 0 else spec.low
        else:
            whole = round_half_away(Fraction(value))
    else:
        whole = round_half_away(value)
    whole = max(spec.low, min(spec.high, whole))
    return whole & ((1 << spec.bits) - 1)


# the shift of each register's 16 bits, in the order they are sent, per data type and word order
_SHIFTS = {
    (data_type, order): tuple(
        range(0, spec.bits, 16) if order == "little" else range(spec.bits - 16, -16, -16)
    )
    for data_type, spec in _SPECS.items()
    for order in WORD_ORDERS
}


def to_registers(raw: int, data_type: DataType, word_order: str) -> tuple[int, ...]:
    """Split a bit pattern into 16-bit registers in the given word order."""
    return tuple([(raw >> shift) & 0xFFFF for shift in _SHIFTS[data_type, word_order]])


_BOUNDS = {
    data_type: (spec.low, spec.high, (1 << spec.bits) - 1) for data_type, spec in _SPECS.items()
}
_MARKERS = {
    (data_type, order): to_registers(spec.marker, data_type, order)
    for data_type, spec in _SPECS.items()
    for order in WORD_ORDERS
}


def encode_exact(
    number: Number | None, data_type: DataType, constant: Fraction, word_order: str
) -> tuple[int, ...]:
    """``encode`` through ``scaled`` and ``raw_bits``: the reference its fast path is held to."""
    value = None if number is None else scaled(number, constant)
    return to_registers(raw_bits(value, data_type), data_type, word_order)


def encode_integer(value: int | None, data_type: DataType, word_order: str) -> tuple[int, ...]:
    """``encode(Number(value), data_type, ONE, word_order)`` for an integer (a header field, a
    date in seconds), without the scaling: an integer type only clamps it."""
    if value is None:
        return _MARKERS[data_type, word_order]
    if _SPECS[data_type].floating:
        return encode(Number(value), data_type, ONE, word_order)
    low, high, mask = _BOUNDS[data_type]
    return to_registers(max(low, min(high, value)) & mask, data_type, word_order)


def encode(
    number: Number | None, data_type: DataType, constant: Fraction, word_order: str
) -> tuple[int, ...]:
    """The registers of one value (``None`` = no value: the type's marker).

    A decimal number (every value but a meter's float) is scaled as an integer numerator and
    denominator, without building a ``Fraction`` (which reduces by the gcd at every step): the
    rounding of an integer type and the correctly rounded true division of a float type only
    depend on the ratio, so the registers are those of ``encode_exact``."""
    if number is None:
        return _MARKERS[data_type, word_order]
    if number.real is not None:
        return encode_exact(number, data_type, constant, word_order)
    spec = _SPECS[data_type]
    exponent = number.exponent
    numerator = number.mantissa * constant.numerator
    denominator = constant.denominator
    if exponent >= 0:
        numerator *= 10**exponent
    else:
        denominator *= 10**-exponent
    if spec.floating:
        try:
            as_float = numerator / denominator
        except OverflowError:  # a ratio beyond any float
            as_float = math.inf if numerator > 0 else -math.inf
        largest = _FLOAT32_MAX if spec.bits == 32 else sys.float_info.max
        as_float = max(-largest, min(largest, as_float))
        if spec.bits == 32:
            raw = struct.unpack(">I", struct.pack(">f", as_float))[0]
        else:
            raw = struct.unpack(">Q", struct.pack(">d", as_float))[0]
    else:
        whole, rest = divmod(-numerator if numerator < 0 else numerator, denominator)
        if 2 * rest >= denominator:
            whole += 1
        if numerator < 0:
            whole = -whole
        low, high, mask = _BOUNDS[data_type]
        raw = max(low, min(high, whole)) & mask
    return to_registers(raw, data_type, word_order)


def decode_registers(registers: list[int] | tuple[int, ...], data_type: DataType, word_order: str):
    """The inverse of ``encode`` for documentation examples and tests: the value a client sees
    (an int or a float; None for the no-value marker)."""
    spec = _SPECS[data_type]
    words = list(registers[: data_type.registers])
    if word_order == "little":
        words.reverse()
    raw = 0
    for word in words:
        raw = raw << 16 | word
    if raw == spec.marker:
        return None
    if spec.floating:
        fmt = (">I", ">f") if spec.bits == 32 else (">Q", ">d")
        return struct.unpack(fmt[1], struct.pack(fmt[0], raw))[0]
    if spec.signed and raw >> (spec.bits - 1):
        raw -= 1 << spec.bits
    return raw
