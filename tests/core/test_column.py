"""The integer column transform of compacted blocks: exact round trips, typed errors only."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbusgw.core import DecodeError
from mbusgw.core.column import pack_int64, unpack_int64

INT64 = st.integers(-(2**63), 2**63 - 1)


def round_trip(values: np.ndarray, order: int) -> np.ndarray:
    out = np.empty(len(values), np.int64)
    unpack_int64(pack_int64(values, order), out)
    return out


@pytest.mark.property
@given(st.lists(INT64, max_size=300), st.sampled_from([1, 2]))
def test_any_column_round_trips(values: list[int], order: int) -> None:
    column = np.array(values, np.int64)
    assert round_trip(column, order).tolist() == values


@pytest.mark.parametrize("order", [1, 2])
def test_extremes_wrap_without_loss(order: int) -> None:
    column = np.array([2**63 - 1, -(2**63), 0, 2**63 - 1, -1, -(2**63)], np.int64)
    assert round_trip(column, order).tolist() == column.tolist()


def test_regular_series_packs_to_its_seeds() -> None:
    # 15-minute timestamps: deltas of deltas are all zero, so nothing but the seeds is stored
    times = 1_700_000_000 + 900 * np.arange(96, dtype=np.int64)
    packed = pack_int64(times, 2)
    assert len(packed) <= 8
    assert round_trip(times, 2).tolist() == times.tolist()


def test_constant_column_is_a_few_bytes() -> None:
    assert len(pack_int64(np.full(1000, 42, np.int64), 1)) == 2


def test_small_deltas_take_one_byte_each() -> None:
    counter = np.cumsum(np.arange(500, dtype=np.int64) % 50) + 10**9
    assert len(pack_int64(counter, 1)) < 500 + 8


def test_bad_order_is_the_callers_error() -> None:
    with pytest.raises(ValueError):
        pack_int64(np.zeros(3, np.int64), 3)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x13", b"\x05", b"\x05\x80", b"\x05\x02\x01", b"\x05\x02\x01\x02\x03"],
)
def test_corrupt_columns_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack_int64(data, np.empty(3, np.int64))


@pytest.mark.property
@given(st.binary(max_size=64), st.integers(0, 40))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes, count: int) -> None:
    out = np.empty(count, np.int64)
    with contextlib.suppress(DecodeError):
        unpack_int64(data, out)
