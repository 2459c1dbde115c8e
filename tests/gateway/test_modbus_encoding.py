"""Register encoding: every data type, exact scaling, rounding, saturation, markers, word order."""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from mbusgw.gateway.modbus_encoding import (
    ONE,
    DataType,
    Number,
    decode_registers,
    encode,
    encode_exact,
    encode_integer,
    parse_constant,
    raw_bits,
    round_half_away,
)

DATATYPE = ModbusTcpClient.DATATYPE
INTEGER_RANGES = {
    DataType.INT16: (-(2**15) + 1, 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 2),
    DataType.INT32: (-(2**31) + 1, 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 2),
    DataType.INT64: (-(2**63) + 1, 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 2),
}


def client_value(registers: tuple[int, ...], data_type: DataType, order: str = "big"):
    """What pymodbus's own client decodes (an independent check of the encoding)."""
    return ModbusTcpClient.convert_from_registers(
        list(registers), DATATYPE[data_type.name], word_order=order
    )


@pytest.mark.parametrize(
    ("data_type", "number", "constant", "expected"),
    [
        (DataType.INT16, Number(12345, -3), "1", 12),
        (DataType.INT16, Number(12345, -3), "1000", 12345),
        (DataType.INT16, Number(-15, -1), "1", -2),  # half away from zero
        (DataType.INT16, Number(25, -1), "1", 3),
        (DataType.INT16, Number(24, -1), "1", 2),
        (DataType.UINT16, Number(65534), "1", 65534),
        (DataType.INT32, Number(-2147483647), "1", -2147483647),
        (DataType.UINT32, Number(123456789, -2), "100", 123456789),
        (DataType.INT64, Number(9_223_372_036_854_775_807), "1", 9_223_372_036_854_775_807),
        (DataType.UINT64, Number(1, 18), "10", 10**19),
        (DataType.INT32, Number(1, 2), "0.001", 0),  # 0.1 rounds to 0
        (DataType.INT32, Number(5, 2), "0.001", 1),  # 0.5 rounds away from zero
        (DataType.INT32, Number(36, -1), "3.6", 13),  # 12.96: exact, no float on the way
    ],
)
def test_integer_types_are_exact(data_type, number, constant, expected) -> None:
    registers = encode(number, data_type, parse_constant(constant), "big")
    assert len(registers) == data_type.registers
    assert client_value(registers, data_type) == expected
    assert decode_registers(registers, data_type, "big") == expected


@pytest.mark.parametrize("data_type", list(INTEGER_RANGES))
def test_integers_saturate_and_keep_the_marker_for_no_value(data_type) -> None:
    low, high = INTEGER_RANGES[data_type]
    huge, tiny = Number(1, 30), Number(-1, 30)
    assert decode_registers(encode(huge, data_type, ONE, "big"), data_type, "big") == high
    assert decode_registers(encode(tiny, data_type, ONE, "big"), data_type, "big") == low
    marker = encode(None, data_type, ONE, "big")
    assert decode_registers(marker, data_type, "big") is None
    # the marker is the one value a reading can never produce
    assert client_value(marker, data_type) not in range(low, high + 1)
    inf = Number(real=math.inf)
    assert decode_registers(encode(inf, data_type, ONE, "big"), data_type, "big") == high


def test_float_types() -> None:
    f32 = encode(Number(12345, -3), DataType.FLOAT32, ONE, "big")
    assert client_value(f32, DataType.FLOAT32) == struct.unpack(">f", struct.pack(">f", 12.345))[0]
    f64 = encode(Number(12345, -3), DataType.FLOAT64, ONE, "big")
    assert client_value(f64, DataType.FLOAT64) == 12.345
    # beyond float32: the largest finite float32, sign kept
    big = encode(Number(-1, 60), DataType.FLOAT32, ONE, "big")
    assert client_value(big, DataType.FLOAT32) == -struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
    beyond = encode(Number(real=-math.inf), DataType.FLOAT64, ONE, "big")
    assert client_value(beyond, DataType.FLOAT64) == -1.7976931348623157e308
    # no value: a quiet NaN
    assert encode(None, DataType.FLOAT32, ONE, "big") == (0x7FC0, 0)
    assert math.isnan(client_value(encode(None, DataType.FLOAT64, ONE, "big"), DataType.FLOAT64))
    assert encode(Number(real=math.nan), DataType.FLOAT32, ONE, "big") == (0x7FC0, 0)


def test_real_values_from_the_meter_scale_by_their_exponent() -> None:
    registers = encode(Number(exponent=-1, real=21.5), DataType.FLOAT32, ONE, "big")
    assert client_value(registers, DataType.FLOAT32) == pytest.approx(2.15)
    assert (
        decode_registers(
            encode(Number(exponent=1, real=2.5), DataType.INT16, ONE, "big"), DataType.INT16, "big"
        )
        == 25
    )


@pytest.mark.parametrize("data_type", list(DataType))
def test_word_order(data_type) -> None:
    number = Number(-1234567, -2) if data_type != DataType.UINT16 else Number(1234)
    big = encode(number, data_type, ONE, "big")
    little = encode(number, data_type, ONE, "little")
    assert little == big[::-1]
    assert client_value(little, data_type, "little") == client_value(big, data_type, "big")


def test_parse_constant() -> None:
    assert parse_constant("1000") == 1000
    assert parse_constant(" 0.001 ") == Fraction(1, 1000)
    for bad in ("", "abc", "0", "-0", "nan", "inf", "1e13", "1e-13", "1.23456789012345678"):
        with pytest.raises(ValueError):
            parse_constant(bad)


def test_round_half_away() -> None:
    assert [round_half_away(Fraction(n, 2)) for n in range(-5, 6)] == [
        -3,
        -2,
        -2,
        -1,
        -1,
        0,
        1,
        1,
        2,
        2,
        3,
    ]


@pytest.mark.property
@given(
    mantissa=st.integers(-(2**63), 2**63 - 1),
    exponent=st.integers(-128, 127),
    constant=st.sampled_from(["1", "10", "1000", "0.001", "3.6", "-1"]),
    data_type=st.sampled_from(list(INTEGER_RANGES)),
    order=st.sampled_from(["big", "little"]),
)
def test_integer_encoding_is_round_then_clamp(mantissa, exponent, constant, data_type, order):
    registers = encode(Number(mantissa, exponent), data_type, parse_constant(constant), order)
    assert len(registers) == data_type.registers
    assert all(0 <= word <= 0xFFFF for word in registers)
    exact = Fraction(mantissa) * Fraction(10) ** exponent * Fraction(constant)
    low, high = INTEGER_RANGES[data_type]
    expected = max(low, min(high, round_half_away(exact)))
    assert decode_registers(registers, data_type, order) == expected
    assert client_value(registers, data_type, order) == expected


@pytest.mark.property
@given(real=st.floats(allow_nan=True, allow_infinity=True), exponent=st.integers(-128, 127))
def test_any_real_encodes_to_valid_registers(real, exponent) -> None:
    for data_type in DataType:
        registers = encode(Number(exponent=exponent, real=real), data_type, ONE, "big")
        assert len(registers) == data_type.registers
        assert all(0 <= word <= 0xFFFF for word in registers)
        assert 0 <= raw_bits(None, data_type) < 2 ** (16 * data_type.registers)


def _constant_text(digits: int, exponent: int, negative: bool) -> str:
    """A constant ``parse_constant`` accepts (15 digits at most, 1e-12 … 1e12 in size)."""
    text = f"{'-' if negative else ''}{digits}E{exponent}"
    try:
        parse_constant(text)
    except ValueError:
        return "1"
    return text


CONSTANTS = st.one_of(
    st.sampled_from(["1", "10", "1000", "0.001", "3.6", "-1", "0.5", "1E12", "1E-12"]),
    st.builds(
        _constant_text,
        st.integers(1, 10**15 - 1),
        st.integers(-27, 12),
        st.booleans(),
    ),
)


@pytest.mark.property
@given(
    mantissa=st.one_of(st.integers(-1000, 1000), st.integers(-(2**64), 2**64)),
    exponent=st.integers(-330, 330),
    constant=CONSTANTS,
    data_type=st.sampled_from(list(DataType)),
    order=st.sampled_from(["big", "little"]),
)
def test_fast_encoding_is_the_exact_one(mantissa, exponent, constant, data_type, order) -> None:
    number, factor = Number(mantissa, exponent), parse_constant(constant)
    assert encode(number, data_type, factor, order) == encode_exact(
        number, data_type, factor, order
    )


def test_fast_encoding_is_the_exact_one_at_halves_bounds_and_markers() -> None:
    """Every type and word order over the halfway points, the saturation bounds, zero and the
    no-value marker, where a rounding or clamping slip would show."""
    constants = [parse_constant(text) for text in ("1", "0.5", "-2.5", "0.001", "3.6")]
    bounds = [bound for low, high in INTEGER_RANGES.values() for bound in (low, high)]
    mantissas = [*range(-30, 31), *bounds, *(b + 1 for b in bounds), *(b - 1 for b in bounds)]
    for data_type in DataType:
        for order in ("big", "little"):
            assert encode(None, data_type, ONE, order) == encode_exact(None, data_type, ONE, order)
            for mantissa in mantissas:
                for exponent in (-2, -1, 0, 1):
                    for factor in constants:
                        number = Number(mantissa, exponent)
                        fast = encode(number, data_type, factor, order)
                        assert fast == encode_exact(number, data_type, factor, order)


@pytest.mark.property
@given(
    value=st.one_of(st.none(), st.integers(-(2**70), 2**70)),
    data_type=st.sampled_from(list(DataType)),
    order=st.sampled_from(["big", "little"]),
)
def test_integer_encoding_is_the_exact_one(value, data_type, order) -> None:
    number = None if value is None else Number(value)
    assert encode_integer(value, data_type, order) == encode_exact(number, data_type, ONE, order)
