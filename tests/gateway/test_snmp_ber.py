"""The agent's own BER path answers the common requests with exactly pysnmp's bytes, takes
nothing it does not fully understand, and no datagram makes ``answer`` fail otherwise than by
refusing it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import encoder
from pysnmp.proto.api import v2c

from mbusgw.gateway.services.snmp import ber
from mbusgw.gateway.services.snmp.codec import (
    Refused,
    answer,
    answer_with_pysnmp,
    snmp_value,
)
from mbusgw.gateway.services.snmp.objects import DEVICE, METER_ENTRY, Oid, Snapshot, Value

COMMUNITY = b"gw-read-1"

SERVED: list[Value] = [
    ("text", ""),
    ("text", "23456789-ABB-07"),
    ("text", "Keller Süd, Zähler 3 " * 20),  # UTF-8, long form length
    ("integer", 0),
    ("integer", 3),
    ("integer", 127),
    ("integer", 128),
    ("integer", -1),
    ("integer", -128),
    ("integer", -129),
    ("integer", 2**31 - 1),
    ("integer", -(2**31)),
    ("gauge", 0),
    ("gauge", 512),
    ("gauge", 2**32 - 1),
    ("ticks", 0),
    ("ticks", 123_456),
    ("ticks", 2**32 + 5),  # wraps as the agent's uptime does
    ("oid", (1, 3, 6, 1, 4, 1, 99999, 0, 1)),
    ("oid", (2, 999, 2**32 - 1)),
    ("null", None),
    ("noSuchInstance", None),
    ("endOfMibView", None),
]


def pysnmp_response(
    request_id: int, varbinds: list[tuple[Oid, Value]], error_status: int = 0
) -> bytes:
    pdu = v2c.ResponsePDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    v2c.apiPDU.set_error_status(pdu, error_status)
    v2c.apiPDU.set_varbinds(pdu, [(oid, snmp_value(value)) for oid, value in varbinds])
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, COMMUNITY)
    v2c.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


def request(
    kind: Any, oids: list[Oid], request_id: int = 7, community: bytes = COMMUNITY, **bulk: int
) -> bytes:
    pdu = kind()
    (v2c.apiBulkPDU if bulk else v2c.apiPDU).set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    if bulk:
        v2c.apiBulkPDU.set_non_repeaters(pdu, bulk["non_repeaters"])
        v2c.apiBulkPDU.set_max_repetitions(pdu, bulk["max_repetitions"])
    v2c.apiPDU.set_varbinds(pdu, [(oid, v2c.null) for oid in oids])
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, community)
    v2c.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


def meter_snapshot(meters: int = 20, text: str = "12345678-ABB-07") -> Snapshot:
    rows: dict[Oid, Value] = {
        (*DEVICE, 1, 0): ("text", "gateway"),
        (*DEVICE, 2, 0): ("ticks", 98_765),
        (*DEVICE, 4, 0): ("gauge", meters),
        (*DEVICE, 7, 0): ("integer", 2),
    }
    for index in range(1, meters + 1):
        rows[(*METER_ENTRY, 2, index)] = ("text", f"{index:08d}-{text}")
        rows[(*METER_ENTRY, 4, index)] = ("integer", 1 + index % 3)
    return Snapshot(rows)


@pytest.mark.parametrize("value", SERVED, ids=repr)
@pytest.mark.parametrize("request_id", [0, 1, 300, -5, 2**31 - 1, -(2**31)])
def test_response_bytes_equal_pysnmp_for_every_value_type(value: Value, request_id: int) -> None:
    varbinds = [((1, 3, 6, 1, 4, 1, 99999, 1, 2, 1, 2, 200), value), ((1, 3, 0), value)]
    assert ber.response(COMMUNITY, request_id, varbinds) == pysnmp_response(request_id, varbinds)


def test_an_error_status_is_written_as_pysnmp_does() -> None:
    varbinds: list[tuple[Oid, Value]] = [((1, 3, 6, 1), ("null", None))]
    assert ber.response(COMMUNITY, 9, varbinds, 1) == pysnmp_response(9, varbinds, 1)


@pytest.mark.parametrize(
    "value",
    [("integer", 2**31), ("gauge", -1), ("gauge", 2**32), ("integer", "3"), ("table", 1)],
    ids=repr,
)
def test_a_value_pysnmp_would_judge_is_left_to_pysnmp(value: Value) -> None:
    with pytest.raises(ber.Unsupported):
        ber.response(COMMUNITY, 1, [((1, 3, 6), value)])


SNAPSHOT = meter_snapshot()
FIRST, LAST = SNAPSHOT.oids[0], SNAPSHOT.oids[-1]
COMMON = [
    request(v2c.GetRequestPDU, [FIRST]),
    request(v2c.GetRequestPDU, [FIRST, (*METER_ENTRY, 4, 3), (1, 3, 6, 1, 99), LAST]),
    request(v2c.GetNextRequestPDU, [(1, 3)]),
    request(v2c.GetNextRequestPDU, [FIRST, (*METER_ENTRY, 2), LAST], request_id=-77),
    request(v2c.GetBulkRequestPDU, [(1, 3)], non_repeaters=0, max_repetitions=10),
    request(
        v2c.GetBulkRequestPDU, [FIRST, (*METER_ENTRY, 2), LAST], non_repeaters=1, max_repetitions=25
    ),
    request(v2c.GetBulkRequestPDU, [LAST], non_repeaters=0, max_repetitions=2**31 - 1),
    request(v2c.GetBulkRequestPDU, [FIRST], non_repeaters=5, max_repetitions=0),
]


@pytest.mark.parametrize("datagram", COMMON, ids=lambda d: d.hex())
def test_the_common_requests_take_the_fast_path_with_pysnmp_s_answer(datagram: bytes) -> None:
    assert ber.read_request(datagram) is not None
    assert answer(datagram, COMMUNITY, SNAPSHOT) == answer_with_pysnmp(
        datagram, COMMUNITY, SNAPSHOT
    )


def test_a_bulk_answer_too_big_for_a_datagram_shrinks_and_then_says_too_big() -> None:
    snapshot = meter_snapshot(meters=200, text="x" * 700)  # 140 kB of meter IDs
    for datagram in (
        request(v2c.GetBulkRequestPDU, [(1, 3)], non_repeaters=0, max_repetitions=1000),
        request(v2c.GetRequestPDU, [(*METER_ENTRY, 2, n) for n in range(1, 101)]),
    ):
        fast = answer(datagram, COMMUNITY, snapshot)
        assert ber.read_request(datagram) is not None and len(fast) <= 65_000
        assert fast == answer_with_pysnmp(datagram, COMMUNITY, snapshot)


def test_the_wrong_community_is_refused_on_the_fast_path() -> None:
    datagram = request(v2c.GetRequestPDU, [FIRST], community=b"public")
    assert ber.read_request(datagram) is not None
    with pytest.raises(Refused, match="community"):
        answer(datagram, COMMUNITY, SNAPSHOT)


def long_form_lengths(datagram: bytes, at: int = 0, end: int | None = None) -> bytes:
    """The same message with the length of every sequence in two bytes: valid BER, not the
    canonical form."""
    end = len(datagram) if end is None else end
    out = b""
    while at < end:
        tag, start, stop = ber._field(datagram, at, end)
        if tag & 0x20:
            content = long_form_lengths(datagram, start, stop)
            out += bytes((tag, 0x82)) + len(content).to_bytes(2, "big") + content
        else:
            out += datagram[at:stop]
        at = stop
    return out


@pytest.mark.parametrize(
    "datagram",
    [
        long_form_lengths(COMMON[3]),
        request(v2c.SetRequestPDU, [FIRST]),
        COMMON[0] + b"\x00",  # trailing bytes, which pyasn1 ignores
    ],
    ids=["long-form lengths", "set", "trailing bytes"],
)
def test_what_the_reader_does_not_take_pysnmp_answers(datagram: bytes) -> None:
    assert ber.read_request(datagram) is None
    assert answer(datagram, COMMUNITY, SNAPSHOT) == answer_with_pysnmp(
        datagram, COMMUNITY, SNAPSHOT
    )


def outcome(function: Any, datagram: bytes) -> bytes | str:
    try:
        return function(datagram, COMMUNITY, SNAPSHOT)
    except Refused:
        return "refused"


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(COMMON)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        byte = draw(st.sampled_from([0x00, 0x01, 0x05, 0x30, 0x7F, 0x80, 0x81, 0x82, 0xFF]))
        if edit == "set" and at < len(data):
            data[at] = byte
        elif edit == "insert":
            data.insert(at, byte)
        elif edit == "delete" and at < len(data):
            del data[at]
        elif edit == "cut":
            del data[at:]
    return bytes(data)


ARCS = st.integers(0, 2**32 - 1)
OIDS = st.one_of(
    st.sampled_from(SNAPSHOT.oids),
    st.tuples(st.integers(0, 1), st.integers(0, 39), st.lists(ARCS, max_size=12)).map(
        lambda parts: (parts[0], parts[1], *parts[2])
    ),
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([v2c.GetRequestPDU, v2c.GetNextRequestPDU, v2c.GetBulkRequestPDU]))
    bulk = (
        {"non_repeaters": draw(st.integers(0, 2**31 - 1)), "max_repetitions": draw(ARCS) // 2}
        if kind is v2c.GetBulkRequestPDU
        else {}
    )
    oids = draw(st.lists(OIDS, max_size=6))
    return request(kind, oids, draw(st.integers(-(2**31), 2**31 - 1)), **bulk)


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(datagram=requests())
def test_any_common_request_is_answered_as_pysnmp_answers_it(datagram: bytes) -> None:
    assert ber.read_request(datagram) is not None
    assert answer(datagram, COMMUNITY, SNAPSHOT) == answer_with_pysnmp(
        datagram, COMMUNITY, SNAPSHOT
    )


@pytest.mark.property
@settings(max_examples=400, deadline=None)
@given(datagram=st.one_of(st.binary(max_size=120), damaged()))
def test_any_datagram_is_answered_as_pysnmp_answers_it_or_refused(datagram: bytes) -> None:
    """Hostile or broken input never raises anything but ``Refused``; where the fast reader
    takes a message, the answer is pysnmp's."""
    fast = outcome(answer, datagram)
    if ber.read_request(datagram) is not None:
        assert fast == outcome(answer_with_pysnmp, datagram)
