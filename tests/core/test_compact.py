"""Compact frames: layouts from full and format frames, signatures, rebuilding, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbusgw.core.compact import (
    CompactLayout,
    crc16,
    rebuild_full_frame,
    scan_records,
    split_compact,
    whole_records_length,
)
from mbusgw.core.errors import ChecksumError, DecodeError, MBusError

# EN 13757-3 G.5 (exmbus vectors): full frame records, format frame, compact frame.
G5_FULL = bytes.fromhex("0202D20402152E16022A3423")
G5_FORMAT = bytes.fromhex("08313B02020215022A")
G5_COMPACT = bytes.fromhex("313B42A6D2042E163423")


def test_format_signature_of_the_standard_example() -> None:
    layout = CompactLayout.from_full_frame(G5_FULL)
    assert layout.signature == 0x3B31
    assert layout.headers == (b"\x02\x02", b"\x02\x15", b"\x02\x2a")
    assert layout.sizes == (2, 2, 2)
    assert CompactLayout.from_format_frame(G5_FORMAT) == layout
    assert split_compact(G5_COMPACT) == (0x3B31, 0xA642, bytes.fromhex("D2042E163423"))
    assert crc16(G5_FULL) == 0xA642
    assert rebuild_full_frame(layout, G5_COMPACT) == G5_FULL


def test_rebuilding_checks_signature_and_full_frame_crc() -> None:
    layout = CompactLayout.from_full_frame(G5_FULL)
    with pytest.raises(ChecksumError):
        rebuild_full_frame(layout, G5_COMPACT[:-1] + b"\x24")
    with pytest.raises(DecodeError, match="signature"):
        rebuild_full_frame(layout, b"\x00\x00" + G5_COMPACT[2:])
    with pytest.raises(DecodeError):
        rebuild_full_frame(layout, G5_COMPACT[:-3])
    with pytest.raises(ChecksumError):
        CompactLayout.from_format_frame(G5_FORMAT[:1] + b"\x00" + G5_FORMAT[2:])


def test_scan_handles_extensions_fill_variable_length_and_manufacturer_tail() -> None:
    apl = bytes.fromhex(
        "2F2F"  # fill
        "8410FD3A11220000"  # DIF+DIFE, VIF 0xFD + VIFE
        "0D7C03414243"
        "03616263"  # plain-text VIF "ABC", variable ASCII data of 3 bytes
        "0F0102"  # manufacturer specific rest
    )
    shapes, tail = scan_records(apl)
    assert [s.header.hex() for s in shapes] == ["8410fd3a", "0d7c03414243"]
    assert [s.data_size for s in shapes] == [4, 4]
    assert tail == len(apl) - 3
    assert whole_records_length(apl) == len(apl)


def test_whole_records_length_cuts_a_broken_last_record() -> None:
    apl = bytes.fromhex("2F2F0413630400000 46D28344428 8201".replace(" ", ""))
    assert whole_records_length(apl) == len(apl) - 2
    assert whole_records_length(b"") == 0


def test_special_and_reserved_codes_are_typed_errors() -> None:
    with pytest.raises(DecodeError, match="special DIF"):
        scan_records(b"\x7f\x00")
    with pytest.raises(DecodeError, match="LVAR"):
        scan_records(b"\x0d\x13\xf8")
    with pytest.raises(DecodeError, match="DIFE"):
        scan_records(b"\x84" + b"\x80" * 11 + b"\x00\x13")


@pytest.mark.property
@given(st.binary(max_size=120))
def test_fuzz_scan_and_layouts(data: bytes) -> None:
    try:
        layout = CompactLayout.from_full_frame(data)
    except MBusError:
        return
    compact = bytes(4) + data
    with contextlib.suppress(MBusError):
        rebuild_full_frame(layout, compact)
    assert 0 <= whole_records_length(data) <= len(data)


@pytest.mark.property
@given(st.binary(max_size=60))
def test_fuzz_format_frames(data: bytes) -> None:
    with contextlib.suppress(MBusError):
        CompactLayout.from_format_frame(data)
