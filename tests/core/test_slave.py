"""The virtual bus's slave logic (core.slave): addressing, selection with wildcards and
deselection, the FCB, multi-telegram readings telegram by telegram, the validity time, and
what several masters see of each other (nothing)."""

from __future__ import annotations

import math

from mbusgw.core import decode
from mbusgw.core.frame import (
    parse_frame,
    req_ud2,
    select_secondary,
    set_primary_address,
    snd_nke,
)
from mbusgw.core.slave import (
    ACK,
    COLLISION,
    STATUS_STALE,
    MeterDirectory,
    SlaveIdentity,
    VirtualBus,
    VirtualMeter,
    rsp_ud,
)

NOW = 1_000_000.0
FRESH = NOW - 3600


def telegram(ident: SlaveIdentity, value: int, more: bool = False) -> bytes:
    records = bytes((0x04, 0x13)) + value.to_bytes(4, "little")  # volume, 32-bit integer
    return rsp_ud(ident, 0, 1, 0, records + (b"\x1f" if more else b""))


A = SlaveIdentity("12345678", "ABB", 1, 7, "00001111")
B = SlaveIdentity("12345679", "ABB", 1, 7)
C = SlaveIdentity("1234567A", "KAM", 2, 4)  # a hex digit in the ID
METERS = [
    VirtualMeter("a", A, (telegram(A, 1, more=True), telegram(A, 2)), NOW, primary=5),
    VirtualMeter("b", B, (telegram(B, 3),), NOW, primary=6),
    VirtualMeter("c", C, (telegram(C, 4),), NOW - 7200, primary=6),
]
DIRECTORY = MeterDirectory(METERS)


def ask(bus: VirtualBus, request: bytes, fresh_since: float = -math.inf) -> bytes | None:
    return bus.answer(parse_frame(request), DIRECTORY, fresh_since)


def test_primary_address_snd_nke_and_req_ud2_with_the_fcb() -> None:
    bus = VirtualBus()
    assert ask(bus, snd_nke(5)) == ACK
    first = ask(bus, req_ud2(5, fcb=True))
    assert first == METERS[0].frames[0]
    assert ask(bus, req_ud2(5, fcb=True)) == first  # same FCB: the answer was lost, again
    assert ask(bus, req_ud2(5, fcb=False)) == METERS[0].frames[1]
    assert ask(bus, req_ud2(5, fcb=True)) == METERS[0].frames[0]  # after the last: the first
    assert ask(bus, snd_nke(7)) is None  # nobody there
    assert ask(bus, snd_nke(0xFF)) is None  # a broadcast is never answered
    assert ask(bus, req_ud2(6)) == COLLISION  # two meters share address 6


def test_wildcard_selection_collides_until_one_meter_is_left_and_deselects_the_rest() -> None:
    bus = VirtualBus()
    assert ask(bus, select_secondary("1234567F")) == COLLISION
    assert ask(bus, req_ud2(0xFD)) == COLLISION
    assert ask(bus, select_secondary("1234567F", manufacturer="KAM")) == ACK
    answer = ask(bus, req_ud2(0xFD))
    assert answer is not None and decode(answer).header.id == "1234567A"
    assert ask(bus, select_secondary("9999999F")) is None  # deselects C
    assert ask(bus, req_ud2(0xFD)) is None
    assert ask(bus, select_secondary("12345678", medium=7, version=1)) == ACK
    assert ask(bus, snd_nke(0xFD)) == ACK  # SND_NKE to the selected meter deselects it
    assert ask(bus, req_ud2(0xFD)) is None


def test_enhanced_selection_by_fabrication_number() -> None:
    bus = VirtualBus()
    assert ask(bus, select_secondary("FFFFFFFF", fabrication="0000111F")) == ACK
    assert ask(bus, req_ud2(0xFD, fcb=True)) == METERS[0].frames[0]
    assert ask(bus, select_secondary("12345679", fabrication="FFFFFFFF")) is None  # none known


def test_a_reading_older_than_the_validity_time_is_not_served_as_current() -> None:
    bus = VirtualBus()
    assert ask(bus, select_secondary("1234567A")) == ACK
    answer = ask(bus, req_ud2(0xFD), fresh_since=FRESH)
    assert answer is not None
    stale = decode(answer)
    assert stale.header.id == "1234567A" and stale.header.manufacturer == "KAM"
    assert stale.header.status == STATUS_STALE and len(stale.records) == 0
    assert ask(bus, req_ud2(0xFD, fcb=True)) == METERS[2].frames[0]  # no validity limit


def test_each_master_keeps_its_own_selection_and_link_state() -> None:
    one, two = VirtualBus(), VirtualBus()
    assert ask(one, select_secondary("12345678")) == ACK
    assert ask(two, req_ud2(0xFD)) is None
    assert ask(one, req_ud2(5, fcb=True)) == METERS[0].frames[0]
    assert ask(two, req_ud2(5, fcb=True)) == METERS[0].frames[0]


def test_writes_and_garbage_selections_are_not_answered() -> None:
    bus = VirtualBus()
    assert ask(bus, set_primary_address(5, 9)) is None  # the virtual address is the gateway's
    assert ask(bus, req_ud2(9)) is None and ask(bus, snd_nke(5)) == ACK
    body = bytes.fromhex("53fd52") + b"\x01\x02\x03"  # 3 bytes of selection data
    frame = bytes((0x68, len(body), len(body), 0x68)) + body + bytes((sum(body) & 0xFF, 0x16))
    assert ask(bus, frame) is None
