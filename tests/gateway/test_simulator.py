"""The simulator: telegram templates, the meter's link layer, the wire and its timing."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from mbusgw.core import frame
from mbusgw.core.frame import FrameParser, LongFrame, ShortFrame, parse_frame
from mbusgw.gateway.simulator import (
    SimLine,
    bundled_templates,
    default_meters,
    make_meter,
    random_ids,
    scan_population,
)
from mbusgw.gateway.simulator.telegrams import Template, TemplateError
from mbusgw.gateway.simulator.wire import byte_times, char_bits, merge

LIBMBUS = Path(__file__).parents[1] / "data" / "libmbus"
BIT = 1 / 2400
CHAR = 11 * BIT


def test_every_variable_data_frame_of_the_corpus_is_a_template() -> None:
    for path in sorted((LIBMBUS / "test-frames").glob("*.hex")):
        raw = bytes.fromhex(path.read_text())
        if parse_frame(raw).ci != 0x72:
            with pytest.raises(TemplateError, match="CI 0x72"):
                Template.from_frame(raw, path.stem)
            continue
        template = Template.from_frame(raw, path.stem)
        rebuilt = b"".join(r.raw for r in template.records)
        assert raw[7 + 12 : 7 + 12 + len(rebuilt)] == rebuilt
    assert len(bundled_templates()) == 14


def test_rendered_telegrams_carry_the_identity_and_a_valid_checksum() -> None:
    meter = make_meter("EFE_Engelmann-WaterStar", "1234567A", primary=7, medium=0x07, seed=3)
    raw = meter.handle(ShortFrame(0, 0x7B, 7), 10.0)
    event = parse_frame(raw)  # checksum and lengths are valid
    assert isinstance(event, LongFrame) and event.control == 0x08 and event.address == 7
    header = event.data[:12]
    assert header[:4] == bytes.fromhex("1234567A")[::-1]
    assert header[4:6] == frame.manufacturer_code("EFE").to_bytes(2, "little")
    assert (header[6], header[7]) == (0, 0x07)
    assert len(raw) == 87  # the template's size


def _counter_values(meter, raw: bytes) -> list[int]:
    data = parse_frame(raw).data
    values, at = [], 12
    for record in meter.template.records:
        field = record.live
        if field is not None and field.counter:
            value = data[at + field.offset : at + field.offset + field.length]
            values.append(int(value[::-1].hex()) if field.bcd else int.from_bytes(value, "little"))
        at += len(record.raw)
    return values


def test_counters_grow_and_differ_between_meters() -> None:
    one = make_meter("landis+gyr_ultraheat_t230", "00000001", primary=1, seed=1)
    two = make_meter("landis+gyr_ultraheat_t230", "00000002", primary=2, seed=2)
    early = _counter_values(one, one.handle(ShortFrame(0, 0x7B, 1), 0.0))
    late = _counter_values(one, one.handle(ShortFrame(0, 0x5B, 1), 86400.0))
    other = _counter_values(two, two.handle(ShortFrame(0, 0x7B, 2), 0.0))
    assert early and all(b >= a for a, b in zip(early, late, strict=True))
    assert any(b > a for a, b in zip(early, late, strict=True))
    assert early != other


def test_fcb_toggles_advance_and_a_repeated_fcb_repeats() -> None:
    meter = make_meter("svm_f22_telegram1", "11223344", primary=3, telegrams=3)
    assert meter.handle(ShortFrame(0, 0x40, 3), 0) == b"\xe5"  # SND_NKE
    first = meter.handle(ShortFrame(0, 0x7B, 3), 0)
    again = meter.handle(ShortFrame(0, 0x7B, 3), 0)  # same FCB: the answer was lost
    second = meter.handle(ShortFrame(0, 0x5B, 3), 0)
    third = meter.handle(ShortFrame(0, 0x7B, 3), 0)
    wrapped = meter.handle(ShortFrame(0, 0x5B, 3), 0)
    assert again == first
    assert [raw[-3] == 0x1F for raw in (first, second, third)] == [True, True, False]
    assert len({first, second, third}) == 3
    assert parse_frame(wrapped).data[12:] == parse_frame(first).data[12:]  # records of telegram 1
    meter.handle(frame.application_reset(3), 0)  # restarts the sequence
    assert meter.handle(ShortFrame(0, 0x5B, 3), 0)[-3] == 0x1F


def test_secondary_selection_with_wildcards_and_the_enhanced_form() -> None:
    meter = make_meter("kamstrup_382_005", "12345678", fabrication="87654321")

    def select(*args, **kwargs) -> bytes | None:
        return meter.handle(parse_frame(frame.select_secondary(*args, **kwargs)), 0)

    assert select("1234FFFF") == b"\xe5" and meter.selected
    assert meter.handle(ShortFrame(0, 0x7B, 0xFD), 0)[0] == 0x68  # read as the selected meter
    assert select("1235FFFF") is None and not meter.selected
    assert select("FFFFFFFF", "KAM", 1, 0x02) == b"\xe5"
    assert select("FFFFFFFF", "ABB") is None
    assert select("12345678", medium=0x07) is None
    assert select("12345678", fabrication="8765FFFF") == b"\xe5"
    assert select("12345678", fabrication="11111111") is None
    select("12345678")
    assert meter.handle(ShortFrame(0, 0x40, 0xFD), 0) == b"\xe5"  # SND_NKE to 253 deselects
    assert not meter.selected


def test_primary_address_change_and_broadcasts() -> None:
    meter = make_meter("GWF-MTKcoder", "00000042", primary=5)
    assert meter.handle(parse_frame(frame.set_primary_address(5, 17)), 0) == b"\xe5"
    assert meter.primary == 17
    assert meter.handle(ShortFrame(0, 0x40, 5), 0) is None
    assert meter.handle(ShortFrame(0, 0x40, 0xFE), 0) == b"\xe5"  # broadcast with answer
    assert meter.handle(ShortFrame(0, 0x40, 0xFF), 0) is None  # broadcast without


def test_faults_silent_ignored_and_corrupted() -> None:
    meter = make_meter("GWF-MTKcoder", "00000042", primary=5)
    meter.ignore_next = 1
    assert meter.handle(ShortFrame(0, 0x40, 6), 0) is None  # not for it: not counted
    assert meter.handle(ShortFrame(0, 0x40, 5), 0) is None
    assert meter.handle(ShortFrame(0, 0x40, 5), 0) == b"\xe5"
    meter.corrupt_next = 1
    damaged = meter.handle(ShortFrame(0, 0x7B, 5), 0)
    parser = FrameParser()
    parser.feed(damaged)
    assert [type(e).__name__ for e in parser.flush()] == ["Discarded"]
    meter.silent = True
    assert meter.handle(ShortFrame(0, 0x40, 5), 0) is None


def test_an_answer_delay_beyond_the_standard_is_refused() -> None:
    with pytest.raises(ValueError, match="extra_delay"):
        make_meter("GWF-MTKcoder", "00000042", answer_delay=2.0)
    with pytest.raises(ValueError, match="0-250"):
        make_meter("GWF-MTKcoder", "00000042", primary=251)
    with pytest.raises(ValueError, match="wildcard"):
        make_meter("GWF-MTKcoder", "0000004F")


def test_populations() -> None:
    ids = random_ids(200, seed=4, style="pairs", hex_digits=True)
    assert len(set(ids)) == 200 and all("F" not in i for i in ids)
    assert sum(a[:7] == b[:7] for a, b in zip(ids[::2], ids[1::2], strict=True)) == 100
    assert any(c in "ABCDE" for i in ids for c in i)
    sequential = random_ids(5, seed=1, style="sequential")
    assert [int(i) - int(sequential[0]) for i in sequential] == [0, 1, 2, 3, 4]
    mix = default_meters(20)
    assert [m.primary for m in mix] == list(range(1, 21))
    assert sum(m.telegrams > 1 for m in mix) >= 3
    assert any(any(c in "ABCDE" for c in m.identity.id) for m in mix)
    assert all(m.primary is None for m in scan_population(3))


# ---------------------------------------------------------------- the wire


def test_identical_answers_in_the_same_bit_time_merge_into_one() -> None:
    assert merge([(0.0, b"\xe5"), (0.0, b"\xe5")], BIT) == [(CHAR, 0xE5)]


def test_overlapping_answers_are_the_and_of_their_bits() -> None:
    assert [b for _, b in merge([(0.0, b"\x0f"), (0.0, b"\xf0")], BIT)] == [0x00]
    shifted = [b for _, b in merge([(0.0, b"\xe5"), (3 * BIT, b"\xe5")], BIT)]
    assert shifted != [0xE5]


def test_a_missing_stop_bit_is_a_null_byte() -> None:
    # the second sender's start bit lands on the first sender's stop bit
    received = merge([(0.0, b"\xff"), (10 * BIT, b"\xff")], BIT)
    assert received[0][1] == 0x00


@pytest.mark.property
@given(st.binary(min_size=1, max_size=40), st.floats(0, 1))
def test_a_lone_transmission_arrives_unchanged_byte_by_byte(data: bytes, start: float) -> None:
    assert merge([(start, data)], BIT) == byte_times(start, data, BIT)
    assert all(len(char_bits(b)) == 11 and sum(char_bits(b)[1:10]) % 2 == 0 for b in data)


async def _exchange(stream, request: bytes, wait: float) -> tuple[bytes, list[float]]:
    await stream.send_all(request)
    data, times = b"", []
    with trio.move_on_after(wait):
        while True:
            chunk = await stream.receive_some()
            data += chunk
            times.append(trio.current_time())
    return data, times


async def _answer_on(line: SimLine, request: bytes) -> tuple[float, bytes, list[float]]:
    master, line_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(line.serve, line_end)
        start = trio.current_time()
        answer, times = await _exchange(master, request, 2.0)
        nursery.cancel_scope.cancel()
    return start, answer, times


async def test_answers_take_real_time_on_the_wire(autojump_clock) -> None:
    meter = make_meter("EFE_Engelmann-WaterStar", "11111111", primary=1)
    line = SimLine([meter], 2400, forward_interval=0.0)
    start, answer, times = await _answer_on(line, frame.req_ud2(1))
    assert len(answer) == 87
    # request 5 characters, turnaround 11 bit times, then one character per 11 bit times
    expected = [start + (5 + 1 + k + 1) * CHAR for k in range(87)]
    assert times == pytest.approx(expected, abs=1e-9)
    assert line.stats.occupancy() == pytest.approx(92 / 93)


async def test_forwarding_in_chunks_still_ends_on_the_last_byte(autojump_clock) -> None:
    meter = make_meter("EFE_Engelmann-WaterStar", "11111111", primary=1)
    line = SimLine([meter], 2400, forward_interval=0.020)
    start, answer, times = await _answer_on(line, frame.req_ud2(1))
    assert len(answer) == 87 and len(times) < 87 / 4
    assert times[-1] == pytest.approx(start + 93 * CHAR)


async def test_line_faults_echo_and_phantom_collision(autojump_clock) -> None:
    meter = make_meter("GWF-MTKcoder", "11111111", primary=1)
    line = SimLine([meter], 2400, echo=True)
    master, line_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(line.serve, line_end)
        echoed, _ = await _exchange(master, frame.snd_nke(1), 1.0)
        assert echoed == frame.snd_nke(1) + b"\xe5"
        line.echo = False
        line.collide_next = 1
        garbled, _ = await _exchange(master, frame.req_ud2(1), 1.0)
        clean, _ = await _exchange(master, frame.req_ud2(1), 1.0)
        nursery.cancel_scope.cancel()
    parser = FrameParser()
    parser.feed(garbled)
    assert any(type(e).__name__ == "Discarded" for e in parser.flush())
    assert isinstance(parse_frame(clean), LongFrame)
    assert line.stats.collisions == 1


async def test_meters_with_a_fixed_rate_answer_only_at_theirs(autojump_clock) -> None:
    slow = make_meter("GWF-MTKcoder", "11111111", primary=1, baud=300)
    line = SimLine([slow], 2400)
    master, line_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(line.serve, line_end)
        silent, _ = await _exchange(master, frame.snd_nke(1), 1.0)
        line.baud = 300
        answer, _ = await _exchange(master, frame.snd_nke(1), 1.0)
        nursery.cancel_scope.cancel()
    assert (silent, answer) == (b"", b"\xe5")
