"""Key codecs: pure, reversible, and LMDB's byte order is the order of the tuples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbusgw.gateway.store import keys

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)


@pytest.mark.property
@given(st.tuples(U32, U32, U64), st.tuples(U32, U32, U64))
def test_reading_keys_sort_like_their_tuples(a: tuple, b: tuple) -> None:
    ka, kb = keys.reading_key(*a), keys.reading_key(*b)
    assert keys.unpack_reading_key(ka) == a
    assert (ka < kb) == (a < b)


@pytest.mark.property
@given(st.tuples(U32, U32), st.tuples(U32, U32))
def test_block_keys_sort_like_their_tuples(a: tuple, b: tuple) -> None:
    ka, kb = keys.block_key(*a), keys.block_key(*b)
    assert keys.unpack_block_key(ka) == a
    assert (ka < kb) == (a < b)


@pytest.mark.property
@given(st.tuples(U64, U32), st.tuples(U64, U32))
def test_log_keys_sort_by_time_then_sequence(a: tuple, b: tuple) -> None:
    ka, kb = keys.log_key(*a), keys.log_key(*b)
    assert keys.unpack_log_key(ka) == a
    assert (ka < kb) == (a < b)


@pytest.mark.property
@given(U32, st.binary(min_size=1, max_size=64))
def test_series_index_keys_group_by_meter(meter: int, signature: bytes) -> None:
    key = keys.series_index_key(meter, signature)
    assert keys.unpack_series_index_key(key) == (meter, signature)
    assert key.startswith(keys.id_key(meter))


def test_slots_and_days() -> None:
    assert keys.slot_of(899) == 0 and keys.slot_of(900) == 1
    assert keys.day_of(86_399) == 0 and keys.day_of(86_400) == 1
    assert keys.SLOT_SECONDS * 96 == keys.DAY_SECONDS
