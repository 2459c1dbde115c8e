"""The TCP fast path for the common read answers exactly what pymodbus's framer and decoder
path answers, for any request bytes, counts the same, and takes every canonical read."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from modbus_rig import ENERGY, VOLUME, Rig, meter
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU

from mbusgw.gateway.modbus_encoding import Number
from mbusgw.gateway.services.modbus_demand import ImageDemand
from mbusgw.gateway.services.modbus_pdu import ModbusStats, Responder
from mbusgw.gateway.services.modbus_source import SeriesValue
from mbusgw.gateway.services.modbus_tcp import (
    BATCH,
    IDLE_SLACK,
    IDLE_SLACK_SHARE,
    MBAP,
    READ_REQUEST,
    TcpServer,
    answer_frame,
    idle_deadline,
    read_fast,
)
from mbusgw.gateway.settings import Settings

U16 = st.integers(0, 0xFFFF)
U8 = st.integers(0, 0xFF)
SETTINGS = {
    "meters": {"00000002": {"enabled": False}, "00000003": {"unit_id": 17}},
    "word_order": "little",
}


def rig(invalid_addresses: str) -> Rig:
    modbus = (
        Settings().updated({"modbus": {**SETTINGS, "invalid_addresses": invalid_addresses}}).modbus
    )
    meters = [meter(f"{i:08d}") for i in range(1, 5)]  # meter 4 is never read
    built = Rig(meters, modbus)
    built.reading("00000001", [ENERGY, VOLUME])
    built.reading("00000002", [VOLUME])
    many = [SeriesValue(bytes((0x04, 0x13, i)), Number(i, -1)) for i in range(30)]
    built.reading("00000003", many)  # more values than a block holds: its own view goes on
    return built


RIGS = {mode: rig(mode) for mode in ("exception", "zero_fill")}

# the fields of a 12-byte frame, each from the values that decide something, or any
UNITS = st.sampled_from([0, 1, 17, 18, 255]) | U8
READS = st.sampled_from([3, 4])
FUNCTIONS = READS | st.sampled_from([1, 2, 6, 16, 0x83, 0]) | U8
ADDRESSES = st.sampled_from([0, 120, 125, 250, 260, 374, 500, 625, 65000, 65411, 65535]) | U16
COUNTS = st.sampled_from([1, 2, 10, 17, 125, 0, 126, 65535]) | U16
FRAMES = (
    st.builds(READ_REQUEST.pack, U16, st.just(0), st.just(6), UNITS, READS, ADDRESSES, COUNTS)
    | st.builds(
        READ_REQUEST.pack,
        U16,
        st.sampled_from([0, 1, 0xFFFF]) | U16,  # protocol id
        st.sampled_from([6, 2, 5, 7, 254]) | U16,  # length
        UNITS,
        FUNCTIONS,
        ADDRESSES,
        COUNTS,
    )
    | st.binary(min_size=0, max_size=14)
)


def pymodbus_path(responder: Responder, frame: bytes) -> bytes | None:
    """What the server answers a frame through pymodbus alone; None where it answers nothing
    (not one whole frame of Modbus TCP)."""
    if len(frame) < 7:
        return None
    _, protocol, length, _ = MBAP.unpack_from(frame)
    if protocol != 0 or not 2 <= length <= 254 or len(frame) != 6 + length:
        return None
    return answer_frame(responder, FramerSocket(DecodePDU(is_server=True)), frame)


@settings(max_examples=600, deadline=None)
@given(
    mode=st.sampled_from(sorted(RIGS)),
    frame=FRAMES,
    before=st.binary(max_size=8),
    after=st.binary(max_size=8),
)
def test_the_fast_path_answers_exactly_what_pymodbus_answers(
    mode: str, frame: bytes, before: bytes, after: bytes
) -> None:
    register_map = RIGS[mode].map
    slow_stats, fast_stats = ModbusStats(), ModbusStats()
    # the frame sits among other bytes in the receive buffer; the fast path looks at the 12
    # bytes from its offset
    buffer = bytearray(before + frame + after)
    fast = read_fast(Responder(register_map, fast_stats), buffer, len(before))
    taken = bytes(buffer[len(before) : len(before) + READ_REQUEST.size])
    canonical = False
    if len(taken) == READ_REQUEST.size:
        _, protocol, length, _, function, _, count = READ_REQUEST.unpack(taken)
        canonical = protocol == 0 and length == 6 and function in (3, 4) and 1 <= count <= 125
    assert (fast is not None) == canonical
    if fast is not None:
        assert fast == pymodbus_path(Responder(register_map, slow_stats), taken)
        assert fast_stats == slow_stats
    assert buffer == before + frame + after  # the buffer is only read


# whole request frames: reads of any shape, and any other PDU
PDUS = st.builds(
    struct.pack,
    st.just(">BHH"),
    st.sampled_from([3, 4, 1, 6]),
    st.sampled_from([0, 125, 250, 374, 65500]) | U16,
    st.sampled_from([1, 17, 125, 0, 126]) | U16,
) | st.binary(min_size=1, max_size=12)
REQUESTS = st.builds(
    lambda tid, unit, pdu: MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu,
    U16,
    st.sampled_from([0, 1, 17, 18]) | U8,
    PDUS,
)


@settings(max_examples=200, deadline=None)
@given(mode=st.sampled_from(sorted(RIGS)), frames=st.lists(REQUESTS, max_size=2 * BATCH + 3))
def test_a_stream_of_requests_is_answered_as_pymodbus_answers_each(
    mode: str, frames: list[bytes]
) -> None:
    register_map = RIGS[mode].map
    slow_stats, fast_stats = ModbusStats(), ModbusStats()
    slow = Responder(register_map, slow_stats)
    expected = [pymodbus_path(slow, frame) for frame in frames]
    server = TcpServer(Responder(register_map, fast_stats), fast_stats, 10, 0, ImageDemand())
    framer = FramerSocket(DecodePDU(is_server=True))
    buffer = bytearray(b"".join(frames))
    answers: list[bytes] = []
    while True:
        batch, used = server._batch(framer, buffer)
        if not batch:
            break
        answers += batch
        del buffer[:used]
    assert answers == expected and not buffer
    assert fast_stats == slow_stats


def test_the_fast_path_serves_registers_and_exceptions() -> None:
    register_map = RIGS["exception"].map
    stats = ModbusStats()
    responder = Responder(register_map, stats)
    answer = read_fast(responder, READ_REQUEST.pack(7, 0, 6, 1, 4, 125, 17), 0)
    assert answer is not None
    tid, protocol, length, unit = MBAP.unpack_from(answer)
    assert (tid, protocol, length, unit) == (7, 0, 3 + 34, 1)
    assert answer[7:9] == bytes((4, 34))
    assert struct.unpack(">17H", answer[9:]) == tuple(register_map.read(1, 125, 17))
    # meter 2 is not served: exception 02
    refused = read_fast(responder, READ_REQUEST.pack(8, 0, 6, 1, 3, 250, 1), 0)
    assert refused == MBAP.pack(8, 0, 3, 1) + bytes((0x83, 2))
    assert (stats.requests, stats.exceptions) == (2, 1)


@given(
    idle=st.sampled_from([0.05, 1.0, 120.0, 3600.0]),
    gaps=st.lists(st.floats(0, 200, allow_nan=False), min_size=1, max_size=40),
)
def test_the_idle_deadline_is_kept_between_idle_and_idle_plus_slack(
    idle: float, gaps: list[float]
) -> None:
    slack = min(IDLE_SLACK, idle * IDLE_SLACK_SHARE)
    now = 1000.0
    deadline = now + idle  # as the connection starts
    for gap in gaps:  # a request answered after each gap, if the connection is still open
        if now + gap > deadline:
            break
        now += gap
        deadline = idle_deadline(deadline, now, idle, slack)
        assert now + idle <= deadline <= now + idle + slack
    assert idle_deadline(float("inf"), now, float("inf"), 0.0) == float("inf")
