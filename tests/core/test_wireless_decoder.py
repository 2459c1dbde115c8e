"""The stateful decoder: per-meter diagnosis counts, key matching, compact layouts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbusgw.core.crypto import AesKey
from mbusgw.core.errors import (
    ChecksumError,
    DecodeError,
    DecryptError,
    LayoutUnknownError,
    MBusError,
    MissingKeyError,
)
from mbusgw.core.wireless_decoder import WirelessDecoder, outcome_of
from mbusgw.core.wmbus import MeterId, add_crc_format_a

N21 = bytes.fromhex(
    "2E4493157856341233037A2A0020255923C95AAA26D1B2E7493B013EC4A6F6D3529B520EDFF0EA6DEFC99D6D69EBF3"
)
N21_KEY = "0102030405060708090A0B0C0D0E0F11"
METER = MeterId("ELS", "12345678", 51, 3)
# jMBus Kamstrup: a full frame (CI 0x78) and a compact frame (CI 0x79), ELL plain in place.
KAM_FULL = bytes.fromhex(
    "40442D2C713785691C0C8D2066445050201E5E780406A60B000004FF074E11000004FF081307000004"
    "14C91A000002FD170000043B000000000259B10B025D67095B"
)
KAM_COMPACT = bytes.fromhex(
    "31442D2C713785691C0C8D2067585050202A4479C4D788B0A60B00004E11000013070000C91A00000000"
    "00000000B10B67095B"
)


def test_outcomes_are_counted_per_meter() -> None:
    decoder = WirelessDecoder()
    with pytest.raises(MissingKeyError):
        decoder.decode(N21, received_at=10.0, rssi=-80)
    decoder.set_keys(bytes(16))
    with pytest.raises(DecryptError):
        decoder.decode(N21, received_at=20.0)
    decoder.set_keys([AesKey(N21_KEY)])
    decoder.decode(N21, received_at=30.0, rssi=-60)
    damaged = bytearray(add_crc_format_a(N21))
    damaged[25] ^= 0xFF
    with pytest.raises(ChecksumError):
        decoder.decode(bytes(damaged), received_at=40.0)
    diagnosis = decoder.diagnosis(METER)
    assert diagnosis.counts == {
        "decoded": 1,
        "missing_key": 1,
        "wrong_key": 1,
        "damaged": 1,
        "unsupported": 0,
        "malformed": 0,
        "layout_unknown": 0,
    }
    assert diagnosis.status == "damaged"
    assert diagnosis.last_heard == 40.0
    assert diagnosis.last_decoded == 30.0
    assert diagnosis.rssi == -60
    assert diagnosis.to_dict()["meter"]["id"] == "12345678"


def test_damage_without_a_trusted_address_is_unattributed() -> None:
    decoder = WirelessDecoder()
    damaged = bytearray(add_crc_format_a(N21))
    damaged[3] ^= 0x01  # the address block itself
    with pytest.raises(ChecksumError):
        decoder.decode(bytes(damaged))
    with pytest.raises(MBusError):
        decoder.decode(N21[:-3])
    assert decoder.diagnoses() == {}
    assert decoder.unattributed["damaged"] == 2


def test_the_key_that_worked_is_tried_first() -> None:
    calls = []
    good = AesKey(N21_KEY)
    wrong = [AesKey(bytes([i]) * 16) for i in range(1, 4)]

    def lookup(meter):
        calls.append(meter)
        return [*wrong, good]

    decoder = WirelessDecoder(keys=lookup)
    assert decoder.decode(N21).key is good
    assert decoder._candidates(METER)[0] is good


def test_compact_frames_need_a_full_frame_first() -> None:
    decoder = WirelessDecoder()
    with pytest.raises(LayoutUnknownError) as caught:
        decoder.decode(KAM_COMPACT)
    assert caught.value.signature == 0xD7C4
    assert outcome_of(caught.value) == "layout_unknown"
    assert "not known yet" in str(caught.value)
    full = decoder.decode(KAM_FULL)
    compact = decoder.decode(KAM_COMPACT)
    assert compact.payload == full.payload
    assert compact.payload_kind == "records"
    assert 0xD7C4 in decoder.layouts(full.meter)


def test_truncated_encryption_is_cut_to_whole_records() -> None:
    frame = bytes((len(N21) - 1 - 5,)) + N21[1:-5]
    telegram = WirelessDecoder(keys=N21_KEY).decode(frame)
    assert telegram.payload == bytes.fromhex("2F2F0C1427048502046D32371F15")


@pytest.mark.property
@given(st.lists(st.binary(max_size=90), max_size=6))
def test_fuzz_streams_raise_only_typed_errors(telegrams: list[bytes]) -> None:
    decoder = WirelessDecoder(keys=[N21_KEY])
    for data in [KAM_FULL, *telegrams, KAM_COMPACT]:
        try:
            decoder.decode(data)
        except MBusError as error:
            assert outcome_of(error) in decoder.unattributed


def test_what_is_kept_per_meter_is_bounded() -> None:
    decoder = WirelessDecoder(max_meters=2)
    meters = []
    for number in range(3):
        frame = bytearray(KAM_FULL)
        frame[4] = number  # another identification number
        meters.append(decoder.decode(bytes(frame)).meter)
    assert decoder.diagnosis(meters[0]) is None
    assert decoder.diagnosis(meters[2]).counts["decoded"] == 1
    assert len(decoder.diagnoses()) == 2


def test_a_malformed_telegram_of_an_unknown_meter_is_unattributed() -> None:
    decoder = WirelessDecoder()
    plain = bytes.fromhex("234433300602010014007A8E0400002F2F0EFD3A1147000000008E40FD3A3412")
    frame = bytes((len(plain) - 1,)) + plain[1:]  # the last record is cut short
    with pytest.raises(DecodeError):
        decoder.decode(frame)
    assert decoder.diagnoses() == {}
    assert sum(decoder.unattributed.values()) == 1
