"""SNMP v2c messages: answering GET, GETNEXT and GETBULK from a ``Snapshot`` (the common
requests with our own BER in ``ber``, every other with pysnmp's protocol layer,
``pysnmp.proto.api.v2c``, BER by pyasn1), and building notifications. No I/O here; the service
and ``notify`` own the sockets."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pysnmp.proto.api import v2c

from mbusgw.gateway.services.snmp import ber
from mbusgw.gateway.services.snmp.objects import Oid, Snapshot, Value

V2C = 1  # the version field of an SNMP v2c message
MAX_MESSAGE = 65_000  # a UDP datagram, with room to spare
MAX_BULK_VARBINDS = 1_000
NOT_WRITABLE = 17
TOO_BIG = 1
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)

_SYNTAX = {
    "text": lambda value: v2c.OctetString(str(value).encode()),
    "integer": v2c.Integer,
    "gauge": v2c.Gauge32,
    "ticks": lambda value: v2c.TimeTicks(int(value) % 2**32),
    "oid": v2c.ObjectIdentifier,
    "null": lambda _: v2c.null,
    "noSuchInstance": lambda _: v2c.NoSuchInstance(""),
    "endOfMibView": lambda _: v2c.EndOfMibView(""),
}
NO_SUCH_INSTANCE: Value = ("noSuchInstance", None)
END_OF_MIB: Value = ("endOfMibView", None)
Varbinds = list[tuple[Oid, Value]]


class Refused(Exception):
    """A datagram that gets no answer (not v2c, wrong community, not a request)."""


def snmp_value(value: Value) -> Any:
    syntax, plain = value
    return _SYNTAX[syntax](plain)


def answer(datagram: bytes, community: bytes, snapshot: Snapshot) -> bytes:
    """The response to one request; ``Refused`` when there is none to send.

    The common requests go through our own BER reader and writer (``ber``); whatever it does
    not take, pysnmp answers, with the same result."""
    request = ber.read_request(datagram)
    if request is None:
        return answer_with_pysnmp(datagram, community, snapshot)
    if not hmac.compare_digest(request.community, community):
        raise Refused("wrong community")
    asked = request.oids
    if request.kind == ber.GET:
        varbinds = _get(snapshot, asked)
    elif request.kind == ber.GETNEXT:
        varbinds = [_next(snapshot, oid) for oid in asked]
    else:
        varbinds = _bulk(snapshot, asked, request.non_repeaters, request.max_repetitions)
    null: Value = ("null", None)
    try:
        return _fit(
            varbinds,
            len(asked),
            lambda binds: ber.response(request.community, request.request_id, binds),
            lambda: ber.response(
                request.community, request.request_id, [(o, null) for o in asked], TOO_BIG
            ),
        )
    except ber.Unsupported:
        return answer_with_pysnmp(datagram, community, snapshot)


def answer_with_pysnmp(datagram: bytes, community: bytes, snapshot: Snapshot) -> bytes:
    """``answer`` by pysnmp's codec: every message it can decode."""
    try:
        message, _ = decoder.decode(datagram, asn1Spec=v2c.Message())
    except (PyAsn1Error, ValueError) as exc:
        raise Refused(f"not an SNMP message: {exc}") from None
    if int(v2c.apiMessage.get_version(message)) != V2C:
        raise Refused("not SNMP v2c")
    if not hmac.compare_digest(bytes(v2c.apiMessage.get_community(message)), community):
        raise Refused("wrong community")
    pdu = v2c.apiMessage.get_pdu(message)
    response = v2c.apiMessage.get_response(message)
    reply = v2c.apiMessage.get_pdu(response)
    asked = [tuple(oid) for oid, _ in v2c.apiPDU.get_varbinds(pdu)]
    tag = pdu.tagSet
    if tag == v2c.GetRequestPDU.tagSet:
        varbinds = _snmp_values(_get(snapshot, asked))
    elif tag == v2c.GetNextRequestPDU.tagSet:
        varbinds = _snmp_values([_next(snapshot, oid) for oid in asked])
    elif tag == v2c.GetBulkRequestPDU.tagSet:
        non_repeaters = int(v2c.apiBulkPDU.get_non_repeaters(pdu))
        repetitions = int(v2c.apiBulkPDU.get_max_repetitions(pdu))
        varbinds = _snmp_values(_bulk(snapshot, asked, non_repeaters, repetitions))
    elif tag == v2c.SetRequestPDU.tagSet:
        v2c.apiPDU.set_error_status(reply, NOT_WRITABLE)
        v2c.apiPDU.set_error_index(reply, 1)
        varbinds = list(v2c.apiPDU.get_varbinds(pdu))
    else:
        raise Refused("not a request")

    def encode(binds: list[tuple[Oid, Any]]) -> bytes:
        v2c.apiPDU.set_varbinds(reply, binds)
        return encoder.encode(response)

    def too_big() -> bytes:
        v2c.apiPDU.set_error_status(reply, TOO_BIG)
        return encode([(oid, v2c.null) for oid in asked])

    return _fit(varbinds, len(asked), encode, too_big)


def _fit(
    varbinds: list[Any],
    asked: int,
    encode: Callable[[list[Any]], bytes],
    too_big: Callable[[], bytes],
) -> bytes:
    """The encoded response within ``MAX_MESSAGE``: a bulk answer may shrink, down to one
    varbind per asked OID; past that, ``tooBig``."""
    encoded = encode(varbinds)
    while len(encoded) > MAX_MESSAGE and len(varbinds) > asked:
        varbinds = varbinds[: max(asked, len(varbinds) // 2)]
        encoded = encode(varbinds)
    if len(encoded) > MAX_MESSAGE:
        return too_big()
    return encoded


def _snmp_values(varbinds: Varbinds) -> list[tuple[Oid, Any]]:
    return [(oid, snmp_value(value)) for oid, value in varbinds]


def _get(snapshot: Snapshot, asked: Sequence[Oid]) -> Varbinds:
    return [(oid, snapshot.get(oid) or NO_SUCH_INSTANCE) for oid in asked]


def _next(snapshot: Snapshot, oid: Oid) -> tuple[Oid, Value]:
    found = snapshot.next(oid)
    if found is None:
        return oid, END_OF_MIB
    return found


def _bulk(
    snapshot: Snapshot, asked: Sequence[Oid], non_repeaters: int, repetitions: int
) -> Varbinds:
    """RFC 3416 4.2.3: the non-repeaters once, then the rest ``repetitions`` times over."""
    non_repeaters = max(0, min(non_repeaters, len(asked)))
    varbinds = [_next(snapshot, oid) for oid in asked[:non_repeaters]]
    repeaters = list(asked[non_repeaters:])
    if not repeaters:
        return varbinds
    rounds = max(0, min(repetitions, MAX_BULK_VARBINDS // len(repeaters)))
    for _ in range(rounds):
        row = [_next(snapshot, oid) for oid in repeaters]
        varbinds += row
        if all(value is END_OF_MIB for _, value in row):
            break
        repeaters = [oid for oid, _ in row]
    return varbinds


def notification(
    community: str,
    trap_oid: Oid,
    uptime_ticks: int,
    values: Sequence[tuple[Oid, Value]],
    *,
    inform: bool,
) -> tuple[int, bytes]:
    """A v2c TRAP or INFORM: ``(request id, message)``."""
    pdu = v2c.InformRequestPDU() if inform else v2c.TrapPDU()
    v2c.apiTrapPDU.set_defaults(pdu)
    varbinds: list[tuple[Oid, Any]] = [
        (SYS_UPTIME, v2c.TimeTicks(uptime_ticks % 2**32)),
        (SNMP_TRAP_OID, v2c.ObjectIdentifier(trap_oid)),
    ]
    varbinds += [(oid, snmp_value(value)) for oid, value in values]
    v2c.apiTrapPDU.set_varbinds(pdu, varbinds)
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, community.encode())
    v2c.apiMessage.set_pdu(message, pdu)
    return int(v2c.apiTrapPDU.get_request_id(pdu)), encoder.encode(message)


def acknowledged(datagram: bytes, request_id: int) -> bool:
    """The datagram is the response to the INFORM ``request_id``."""
    try:
        message, _ = decoder.decode(datagram, asn1Spec=v2c.Message())
        pdu = v2c.apiMessage.get_pdu(message)
    except (PyAsn1Error, ValueError):
        return False
    return (
        pdu.tagSet == v2c.ResponsePDU.tagSet and int(v2c.apiPDU.get_request_id(pdu)) == request_id
    )
