"""The cheap "more records follow" walk agrees with the full decoder on every telegram.

Hypothesis builds telegrams record by record (DIFEs, plain-text VIFs, extension tables, VIFE
chains, variable-length data, fillers, manufacturer data) and also takes arbitrary and mutated
real frames; these also run against the bounds-checked build (``make test-debug``).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_records_properties import VALID, mutated_frames, with_framing

from mbusgw.core import MBusError, decode
from mbusgw.core.records_follow import more_records_follow

FIELD_SIZES = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 4, 6: 6, 7: 8, 8: 0}
FIELD_SIZES |= {field: field - 8 for field in range(9, 0x0D)} | {0x0E: 6}


def decoder_says(frame: bytes) -> bool | None:
    """The decoder's flag, or None when it rejects the frame."""
    try:
        return bool(decode(frame).more_records_follow)
    except MBusError:
        return None


@st.composite
def records(draw) -> bytes:
    field = draw(st.sampled_from(sorted(FIELD_SIZES) + [0x0D]))
    difes = draw(st.lists(st.integers(0, 0x7F), max_size=3))
    dif = draw(st.integers(0, 3)) << 4 | draw(st.integers(0, 1)) << 6 | field
    out = bytearray([dif | (0x80 if difes else 0)])
    out += bytes(b | 0x80 for b in difes[:-1]) + bytes(difes[-1:])
    vif = draw(st.sampled_from([0x13, 0x06, 0x6D, 0x7C, 0x7B, 0x7D, 0x7F, 0x78]))
    vifes = draw(st.lists(st.integers(0, 0x7F), max_size=3))
    if vif in (0x7B, 0x7D):  # an extension VIF needs its extension byte
        vifes = [draw(st.integers(0, 0x7F)), *vifes]
    out.append(vif | (0x80 if vifes else 0))
    if vif == 0x7C:
        out += bytes([len(text := draw(st.binary(max_size=5)))]) + text
    out += bytes(b | 0x80 for b in vifes[:-1]) + bytes(vifes[-1:])
    if field == 0x0D:
        size = draw(st.integers(0, 20))
        out.append(size)  # an LVAR of text
    else:
        size = FIELD_SIZES[field]
    out += draw(st.binary(min_size=size, max_size=size))
    if draw(st.booleans()):
        out += b"\x2f" * draw(st.integers(1, 2))
    return bytes(out)


@st.composite
def telegrams(draw) -> bytes:
    body = b"".join(draw(st.lists(records(), max_size=8)))
    end = draw(st.sampled_from([b"", b"\x1f", b"\x0f", b"\x7f"]))
    tail = draw(st.binary(max_size=6)) if end in (b"\x1f", b"\x0f") else b""
    ci = draw(st.sampled_from([0x72, 0x76, 0x7A, 0x78, 0x51, 0x70, 0x73]))
    header = draw(st.binary(min_size=12, max_size=12)) if ci in (0x72, 0x76) else b""
    header = draw(st.binary(min_size=4, max_size=4)) if ci == 0x7A else header
    if draw(st.integers(0, 9)) == 0:  # now and then cut the telegram short
        return with_framing((header + body + end + tail)[: draw(st.integers(0, 40))], ci)
    return with_framing(header + body + end + tail, ci)


def agrees(frame: bytes) -> None:
    expected = decoder_says(frame)
    if expected is not None:
        assert more_records_follow(frame) is expected
    else:
        assert more_records_follow(frame) is False


@pytest.mark.property
@settings(max_examples=500)
@given(telegrams())
def test_agrees_with_the_decoder_on_built_telegrams(frame: bytes) -> None:
    agrees(frame)


@pytest.mark.property
@settings(max_examples=300)
@given(mutated_frames())
def test_agrees_with_the_decoder_on_mutated_real_frames(frame: bytes) -> None:
    agrees(frame)


@pytest.mark.property
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_no_telegram(data: bytes) -> None:
    agrees(data)


def test_every_real_frame() -> None:
    for frame in VALID:
        agrees(frame)
    assert any(decoder_says(frame) for frame in VALID)  # the corpus has multi-telegram frames


def test_a_bad_checksum_or_foreign_ci_says_no_more() -> None:
    frame = with_framing(bytes(12) + b"\x1f", 0x72)
    assert more_records_follow(frame)
    assert not more_records_follow(frame[:-2] + bytes([(frame[-2] + 1) & 0xFF]) + b"\x16")
    assert not more_records_follow(with_framing(bytes(12) + b"\x1f", 0x70))
