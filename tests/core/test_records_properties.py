"""Hypothesis: the record decoder raises only the typed errors, whatever the bytes.

These also run against the bounds-checked build (``make test-debug``), whose assertions check
the cursor never leaves the payload.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbusgw.core import MBusError, decode, decode_application

CORPUS = [
    bytes(int(token, 16) for token in path.read_text().split())
    for path in sorted((Path(__file__).parent.parent / "data" / "libmbus").glob("*/*.hex"))
    if path.stem != "manual_frame1"
]
VALID = [frame for frame in CORPUS if len(frame) >= 9 and frame[0] == 0x68 and frame[1] >= 3]
CIS = st.sampled_from([0x51, 0x70, 0x71, 0x72, 0x73, 0x76, 0x78, 0x7A]) | st.integers(0, 255)


def exercise(telegram) -> None:
    """Touch every lazy view, so value construction is checked as well."""
    telegram.array.tolist()
    for record in telegram.records:
        record.to_dict()
    telegram.to_json()
    repr(telegram)


def check(call, size: int) -> None:
    """Run a decode: either a telegram whose views all work, or a typed error whose offset
    lies inside the input."""
    try:
        telegram = call()
    except MBusError as error:
        assert error.offset is None or 0 <= error.offset <= size, error
        return
    exercise(telegram)


def with_framing(data: bytes, ci: int = 0x72) -> bytes:
    """A long frame around ``data`` with correct lengths and checksum."""
    body = bytes((0x08, 0x01, ci)) + data[:252]
    length = len(body)
    return bytes((0x68, length, length, 0x68)) + body + bytes((sum(body) & 0xFF, 0x16))


def reframe(frame: bytes) -> bytes:
    return with_framing(frame[7:-2], frame[6])


@pytest.mark.property
@given(st.binary(max_size=300))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    check(lambda: decode(data), len(data))


@pytest.mark.property
@given(CIS, st.binary(max_size=300))
def test_decode_application_arbitrary_bytes(ci: int, data: bytes) -> None:
    check(lambda: decode_application(ci, data), len(data))


@pytest.mark.property
@given(CIS, st.binary(max_size=252))
def test_arbitrary_application_layer_in_a_valid_frame(ci: int, data: bytes) -> None:
    frame = with_framing(data, ci)
    check(lambda: decode(frame), len(frame))


@st.composite
def mutated_frames(draw) -> bytes:
    frame = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        index = draw(st.integers(7, max(7, len(frame) - 3)))
        if action == "set" and index < len(frame):
            frame[index] = draw(st.integers(0, 255))
        elif action == "insert":
            frame[index:index] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete" and index < len(frame) - 2:
            del frame[index]
        else:
            del frame[index:-2]
    fixed = draw(st.booleans())
    return reframe(bytes(frame)) if fixed else bytes(frame)


@pytest.mark.property
@settings(max_examples=300)
@given(mutated_frames())
def test_mutated_real_frames(frame: bytes) -> None:
    check(lambda: decode(frame), len(frame))


@pytest.mark.property
@given(st.sampled_from(VALID), st.data())
def test_every_prefix_of_the_application_layer(frame: bytes, data) -> None:
    cut = data.draw(st.integers(0, len(frame) - 9))
    check(lambda: decode_application(frame[6], frame[7 : 7 + cut]), cut)
