"""Wired M-Bus framing: parser events, resynchronisation, builders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbusgw.core import ChecksumError, EncodeError, FrameError, frame
from mbusgw.core.checksum import crc16_en13757, sum8
from mbusgw.core.frame import (
    ControlFrame,
    Discarded,
    FrameParser,
    LongFrame,
    ShortFrame,
    SingleChar,
)

# A real RSP_UD (libmbus test-frames/ELV-Elvaco-CMa10.hex, BSD-3-Clause, see tests/data).
RSP_UD = bytes.fromhex(
    "68 53 53 68 08 0B 72 61 15 01 24 96 15 16 00 3F 00 00 00 01 FD 1B 02 02 FC 03 48 52 25 74 "
    "22 15 22 FC 03 48 52 25 74 24 0D 12 FC 03 48 52 25 74 C3 1C 02 65 2E 08 22 65 5C 05 12 65 "
    "A2 0B 01 72 18 42 65 2C 08 82 01 65 1F 08 0C 78 61 15 01 24 03 FD 0F 00 00 04 1F BD 16"
)


def all_events(chunks: list[bytes]) -> list:
    parser = FrameParser()
    events = []
    for chunk in chunks:
        parser.feed(chunk)
        events += parser.events()
    return events + parser.flush()


def feed_three_ways(data: bytes) -> list:
    """All at once, one byte at a time, and with trailing garbage: the same events."""
    at_once = all_events([data])
    assert all_events([data[i : i + 1] for i in range(len(data))]) == at_once
    with_tail = all_events([data + b"\x00"])
    assert with_tail[: len(at_once)] == at_once
    tail_error = FrameError("byte 0x00 is not a frame start", len(data))
    assert with_tail[-1] == Discarded(len(data), 1, tail_error)
    return at_once


def test_known_checksums() -> None:
    # wmbusmeters testinternals.cc known answers
    assert crc16_en13757(bytes.fromhex("01FD1F01")) == 0xCC22
    assert crc16_en13757(bytes.fromhex("01FD1F00")) == 0xF147
    assert sum8(bytes((0x7B, 0x05))) == 0x80
    assert sum8(b"") == 0


def test_ack_short_long_and_control_frames() -> None:
    data = b"\xe5" + frame.req_ud2(5, fcb=True) + RSP_UD + frame.application_reset(7)
    events = feed_three_ways(data)
    assert events[0] == SingleChar(0)
    assert events[1] == ShortFrame(1, 0x7B, 5)
    assert isinstance(events[2], LongFrame) and events[2].raw == RSP_UD
    assert (events[2].control, events[2].address, events[2].ci) == (0x08, 0x0B, 0x72)
    assert events[2].data == RSP_UD[7:-2]
    assert isinstance(events[3], ControlFrame) and events[3].ci == 0x50


def test_bad_checksum_discards_the_whole_frame() -> None:
    bad = bytearray(RSP_UD)
    bad[-2] ^= 0xFF
    events = feed_three_ways(bytes(bad) + frame.snd_nke(1))
    assert events[0].offset == 0 and events[0].nbytes == len(RSP_UD)
    assert isinstance(events[0].error, ChecksumError)
    assert events[0].error.offset == len(RSP_UD) - 2
    assert events[1] == ShortFrame(len(RSP_UD), 0x40, 1)


def test_resync_after_garbage_and_false_starts() -> None:
    # a false long start (length fields differ), then garbage, then a real frame
    garbage = b"\x68\x05\x06\x68\x01\x02"
    events = feed_three_ways(garbage + RSP_UD)
    assert isinstance(events[0], Discarded) and events[0].nbytes == len(garbage)
    assert "length fields differ" in str(events[0].error)
    assert events[1].raw == RSP_UD


def test_truncated_frame_is_discarded_on_flush_only() -> None:
    parser = FrameParser()
    parser.feed(RSP_UD[:20])
    assert parser.events() == []
    assert parser.buffered == 20
    (event,) = parser.flush()
    assert event.nbytes == 20 and "truncated" in str(event.error)
    assert parser.buffered == 0


def test_parse_frame_raises_typed_errors() -> None:
    assert frame.parse_frame(RSP_UD).raw == RSP_UD
    with pytest.raises(FrameError, match="after the end"):
        frame.parse_frame(RSP_UD + b"\x16")
    with pytest.raises(FrameError, match="truncated"):
        frame.parse_frame(RSP_UD[:-1])
    with pytest.raises(FrameError):
        frame.parse_frame(b"")


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (frame.snd_nke(1), "10 40 01 41 16"),
        (frame.req_ud2(0xFE), "10 5b fe 59 16"),
        (frame.req_ud2(1, fcb=True), "10 7b 01 7c 16"),
        (frame.application_reset(1), "68 03 03 68 53 01 50 a4 16"),
        (frame.set_primary_address(0, 5), "68 06 06 68 53 00 51 01 7a 05 24 16"),
        # libmbus mbus_select_secondary_address("14491001FFFFFFFF")
        (frame.select_secondary("14491001"), "68 0b 0b 68 53 fd 52 01 10 49 14 ff ff ff ff 0c 16"),
    ],
)
def test_builders_known_answers(built: bytes, expected: str) -> None:
    assert built.hex(" ") == expected


def test_enhanced_selection_and_manufacturer() -> None:
    built = frame.select_secondary("12345678", "ELV", 0x14, 0x07, fabrication="00001234")
    parsed = frame.parse_frame(built)
    assert parsed.data[8:10] == b"\x0c\x78" and len(parsed.data) == 14
    assert frame.parse_selection(parsed.data) == ("12345678", "ELV", 0x14, 0x07, "00001234")
    assert frame.manufacturer_letters(frame.manufacturer_code("elv")) == "ELV"


@pytest.mark.parametrize(
    "call",
    [
        lambda: frame.snd_nke(256),
        lambda: frame.select_secondary("1234"),
        lambda: frame.select_secondary("1234567G"),
        lambda: frame.select_secondary("12345678", "E1V"),
        lambda: frame.select_secondary("12345678", version=300),
        lambda: frame.set_primary_address(0, 251),
    ],
)
def test_builders_refuse_bad_input(call) -> None:
    with pytest.raises(EncodeError):
        call()


ids = st.text(alphabet="0123456789F", min_size=8, max_size=8)
maybe_byte = st.none() | st.integers(0, 254)


@pytest.mark.property
@given(
    ids,
    st.none() | st.sampled_from(["ELV", "KAM", "ABB", "ZRI"]),
    maybe_byte,
    maybe_byte,
    st.none() | ids,
)
def test_selection_round_trips(mask, man, version, medium, fabrication) -> None:
    built = frame.select_secondary(mask, man, version, medium, fabrication)
    (event,) = all_events([built])
    assert event == frame.parse_frame(built)
    assert frame.parse_selection(event.data) == (mask, man, version, medium, fabrication)


@pytest.mark.property
@given(st.integers(0, 255), st.booleans())
def test_short_builders_round_trip(address, fcb) -> None:
    for built, control in (
        (frame.req_ud2(address, fcb), 0x5B | (0x20 * fcb)),
        (frame.snd_nke(address), 0x40),
    ):
        assert all_events([built]) == [ShortFrame(0, control, address)]


@pytest.mark.property
@given(
    st.lists(
        st.binary(max_size=40) | st.sampled_from([RSP_UD, b"\xe5", frame.snd_nke(3)]), max_size=8
    ),
    st.data(),
)
def test_any_bytes_any_chunking_same_events(pieces, data) -> None:
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    events = all_events(chunks)
    assert events == all_events([stream])
    # every byte is accounted for exactly once, in order
    position = 0
    for event in events:
        assert event.offset == position
        size = {SingleChar: 1, ShortFrame: 5}.get(type(event))
        if size is None:
            size = event.nbytes if isinstance(event, Discarded) else len(event.raw)
        position += size
        if isinstance(event, Discarded):
            assert isinstance(event.error, FrameError)
    assert position == len(stream)
