"""A small, strict BER reader and writer for the agent's common messages: SNMPv2c GET, GETNEXT
and GETBULK requests in, their responses out, byte for byte what pyasn1 encodes.

pyasn1 costs about a millisecond per message, and ``snmpwalk`` sends one GETNEXT per object.
The reader takes only the canonical form of exactly those requests (definite minimal lengths,
NULL values, no trailing bytes) and says ``None`` to anything else, which then
goes the general pysnmp way: behaviour never depends on which path answered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mbusgw.gateway.services.snmp.objects import Oid, Value

V2C = 1
GET, GETNEXT, GETBULK = 0xA0, 0xA1, 0xA5
RESPONSE = 0xA2
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
UINT32_MAX = 2**32 - 1

_INTEGER, _OCTETS, _NULL, _OID, _SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
_NULL_VALUE = b"\x05\x00"


class Unsupported(Exception):
    """A value the writer does not encode exactly as pysnmp would (it then answers)."""


@dataclass(frozen=True)
class Request:
    kind: int  # GET, GETNEXT or GETBULK
    community: bytes
    request_id: int
    non_repeaters: int  # GETBULK only (0 otherwise)
    max_repetitions: int  # GETBULK only (0 otherwise)
    oids: list[Oid]


# ---- reading


def _field(data: bytes, at: int, end: int) -> tuple[int, int, int]:
    """``(tag, start, stop)`` of the TLV at ``at``; ``ValueError`` unless it is canonical."""
    if at + 2 > end:
        raise ValueError("truncated")
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 3 or at + count > end or data[at] == 0:
            raise ValueError("length form")
        length = int.from_bytes(data[at : at + count], "big")
        if length < 0x80:
            raise ValueError("length not minimal")
        at += count
    if at + length > end:
        raise ValueError("truncated")
    return tag, at, at + length


def _integer(data: bytes, at: int, end: int) -> tuple[int, int]:
    tag, start, stop = _field(data, at, end)
    # a padded integer still has one value (pyasn1 itself writes -128 as ff 80)
    if tag != _INTEGER or stop == start or stop - start > 5:
        raise ValueError("integer")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def _oid(data: bytes, start: int, stop: int) -> Oid:
    if start == stop or data[stop - 1] & 0x80:
        raise ValueError("oid")
    arcs: list[int] = []
    arc = 0
    fresh = True
    for byte in data[start:stop]:
        if fresh and byte == 0x80:
            raise ValueError("oid arc not minimal")
        arc = (arc << 7) | (byte & 0x7F)
        if arc > UINT32_MAX:  # beyond SNMP's arcs: pysnmp decides
            raise ValueError("oid arc too large")
        fresh = not byte & 0x80
        if fresh:
            arcs.append(arc)
            arc = 0
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def _read(data: bytes) -> Request:
    tag, at, end = _field(data, 0, len(data))
    if tag != _SEQUENCE or end != len(data):
        raise ValueError("message")
    version, at = _integer(data, at, end)
    if version != V2C:
        raise ValueError("version")
    tag, start, at = _field(data, at, end)
    if tag != _OCTETS:
        raise ValueError("community")
    community = data[start:at]
    kind, at, stop = _field(data, at, end)
    if kind not in (GET, GETNEXT, GETBULK) or stop != end:
        raise ValueError("pdu")
    request_id, at = _integer(data, at, end)
    second, at = _integer(data, at, end)
    third, at = _integer(data, at, end)
    if not INT32_MIN <= request_id <= INT32_MAX:
        raise ValueError("request id")
    if kind == GETBULK:
        if not (0 <= second <= INT32_MAX and 0 <= third <= INT32_MAX):
            raise ValueError("bulk counts")
    elif second or third:
        raise ValueError("error fields in a request")
    tag, at, stop = _field(data, at, end)
    if tag != _SEQUENCE or stop != end:
        raise ValueError("varbinds")
    oids: list[Oid] = []
    while at < end:
        tag, at, stop = _field(data, at, end)
        if tag != _SEQUENCE:
            raise ValueError("varbind")
        tag, start, at = _field(data, at, stop)
        if tag != _OID or data[at:stop] != _NULL_VALUE:
            raise ValueError("varbind")
        oids.append(_oid(data, start, at))
        at = stop
    bulk = kind == GETBULK
    return Request(kind, community, request_id, second if bulk else 0, third if bulk else 0, oids)


def read_request(data: bytes) -> Request | None:
    """The request, or None when it is not one the fast path answers exactly."""
    try:
        return _read(data)
    except (ValueError, IndexError):
        return None


# ---- writing


def _tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + content


def _int_bytes(value: int) -> bytes:
    # pyasn1's length: one byte more for a negative power of 256 (-128 is ff 80), as it writes
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)


def _oid_bytes(oid: Oid) -> bytes:
    if len(oid) < 2 or not (0 <= oid[0] <= 2 and oid[1] >= 0) or (oid[0] < 2 and oid[1] >= 40):
        raise Unsupported(f"OID {oid}")
    out = bytearray()
    for arc in (oid[0] * 40 + oid[1], *oid[2:]):
        if arc < 0:
            raise Unsupported(f"OID {oid}")
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = bytearray()
        while arc:
            chunk.append(arc & 0x7F | (0x80 if chunk else 0))
            arc >>= 7
        out += chunk[::-1]
    return bytes(out)


def _ranged(tag: int, value: object, low: int, high: int) -> bytes:
    if type(value) is not int or not low <= value <= high:
        raise Unsupported(f"value {value!r}")
    return _tlv(tag, _int_bytes(value))


def _value(value: Value) -> bytes:
    syntax, plain = value
    if syntax == "text":
        return _tlv(_OCTETS, str(plain).encode())
    if syntax == "integer":
        return _ranged(_INTEGER, plain, INT32_MIN, INT32_MAX)
    if syntax == "gauge":
        return _ranged(0x42, plain, 0, UINT32_MAX)
    if syntax == "ticks" and type(plain) is int:
        return _tlv(0x43, _int_bytes(plain % 2**32))
    if syntax == "oid" and isinstance(plain, tuple):
        return _tlv(_OID, _oid_bytes(plain))
    if syntax in _EMPTY:
        return _EMPTY[syntax]
    raise Unsupported(f"syntax {syntax}")


_EMPTY = {"null": _NULL_VALUE, "noSuchInstance": b"\x81\x00", "endOfMibView": b"\x82\x00"}


def response(
    community: bytes,
    request_id: int,
    varbinds: Sequence[tuple[Oid, Value]],
    error_status: int = 0,
) -> bytes:
    """The v2c Response message; ``Unsupported`` for a value it cannot encode exactly."""
    binds = b"".join(
        _tlv(_SEQUENCE, _tlv(_OID, _oid_bytes(oid)) + _value(value)) for oid, value in varbinds
    )
    pdu = (
        _tlv(_INTEGER, _int_bytes(request_id))
        + _tlv(_INTEGER, _int_bytes(error_status))
        + b"\x02\x01\x00"  # error-index
        + _tlv(_SEQUENCE, binds)
    )
    return _tlv(_SEQUENCE, b"\x02\x01\x01" + _tlv(_OCTETS, community) + _tlv(RESPONSE, pdu))
