"""Wireless M-Bus link layer and transport layer: known answers, framing corner cases, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbusgw.core.checksum import crc16_en13757
from mbusgw.core.crypto import AesKey
from mbusgw.core.errors import (
    ChecksumError,
    DecodeError,
    DecryptError,
    FrameError,
    MBusError,
    MissingKeyError,
    UnsupportedError,
)
from mbusgw.core.wmbus import (
    MeterId,
    add_crc_format_a,
    add_crc_format_b,
    decode_stripped,
    decode_transport,
    decode_wireless,
    meter_from_dll,
    strip_crc,
)

# OMS Vol. 2 Annex N.2.1 (mode 5, key 0102…0F11), CRC-stripped and with format A CRCs.
N21 = bytes.fromhex(
    "2E4493157856341233037A2A0020255923C95AAA26D1B2E7493B013EC4A6F6D3529B520EDFF0EA6DEFC99D6D69EBF3"
)
N21_KEY = "0102030405060708090A0B0C0D0E0F11"
N21_PLAIN = bytes.fromhex("2F2F0C1427048502046D32371F1502FD1700002F2F2F2F2F2F2F2F2F2F2F2F2F")
# A plain telegram with a short header (wmbusmeters "COUNTA", see tests/data/wmbus).
PLAIN_7A = bytes.fromhex("234433300602010014007A8E0400002F2F0EFD3A1147000000008E40FD3A341200000000")


def test_crc_known_answers() -> None:
    assert crc16_en13757(bytes.fromhex("01FD1F01")) == 0xCC22
    assert crc16_en13757(bytes.fromhex("01FD1F00")) == 0xF147
    assert crc16_en13757(b"123456789") == 0xC2B7


def test_mode_5_known_answer_with_and_without_crcs() -> None:
    stripped = decode_wireless(N21, keys=N21_KEY)
    assert stripped.payload == N21_PLAIN
    assert stripped.link.format == "stripped"
    framed = decode_wireless(add_crc_format_a(N21), keys=N21_KEY)
    assert framed.link.format == "A"
    assert framed.payload == N21_PLAIN
    assert stripped.meter == MeterId("ELS", "12345678", 51, 3)
    assert stripped.tpl.access_number == 0x2A
    assert stripped.tpl.security_mode == 5
    assert stripped.tpl.encrypted_blocks == 2
    assert stripped.link.control_name == "SND_NR"


def test_format_b_single_and_double_crc() -> None:
    short = add_crc_format_b(PLAIN_7A)
    assert len(short) == len(PLAIN_7A) + 2
    assert short[0] == len(short) - 1
    assert strip_crc(short) == (PLAIN_7A, "B", b"")
    long_frame = bytes((140,)) + PLAIN_7A[1:] + bytes(range(140 - len(PLAIN_7A) + 1))
    framed = add_crc_format_b(long_frame)
    assert len(framed) == len(long_frame) + 4
    assert strip_crc(framed) == (long_frame, "B", b"")
    for at in (5, 130, len(framed) - 1):
        damaged = bytearray(framed)
        damaged[at] ^= 0x80
        with pytest.raises(ChecksumError) as caught:
            strip_crc(bytes(damaged), "B")
        assert caught.value.block == (0 if at < 128 else 1)


def test_trailing_bytes_are_kept_apart() -> None:
    frame, fmt, trailing = strip_crc(PLAIN_7A + b"\xc5")
    assert (frame, fmt, trailing) == (PLAIN_7A, "stripped", b"\xc5")
    framed = add_crc_format_a(PLAIN_7A)
    assert strip_crc(framed + b"\x01\x02") == (PLAIN_7A, "A", b"\x01\x02")


def test_truncated_and_too_small_frames() -> None:
    with pytest.raises(FrameError, match="truncated"):
        decode_wireless(PLAIN_7A[:-1])
    with pytest.raises(FrameError, match="too small"):
        decode_wireless(b"\x05\x44\x00\x00\x00\x00")
    with pytest.raises(FrameError, match="empty"):
        decode_wireless(b"")
    with pytest.raises(FrameError, match="truncated format A"):
        decode_wireless(add_crc_format_a(PLAIN_7A)[:-3], frame_format="A")


def test_format_a_damage_names_the_block_and_keeps_the_meter() -> None:
    framed = bytearray(add_crc_format_a(N21))
    framed[20] ^= 0x01
    with pytest.raises(ChecksumError) as caught:
        decode_wireless(bytes(framed))
    assert caught.value.block == 1
    assert meter_from_dll(bytes(framed)) == MeterId("ELS", "12345678", 51, 3)


def test_key_sources() -> None:
    key = AesKey(N21_KEY)
    assert decode_wireless(N21, keys=key).key is key
    assert decode_wireless(N21, keys=bytes.fromhex(N21_KEY)).payload == N21_PLAIN
    seen = []

    def lookup(meter):
        seen.append(meter)
        return [key]

    assert decode_wireless(N21, keys=lookup).payload == N21_PLAIN
    assert seen == [MeterId("ELS", "12345678", 51, 3)]
    with pytest.raises(MissingKeyError) as caught:
        decode_wireless(N21, keys=lambda meter: [])
    assert caught.value.meter == seen[0]
    assert caught.value.security_mode == 5
    # a DES key is no key for an AES mode
    with pytest.raises(MissingKeyError):
        decode_wireless(N21, keys="0102030405060708")


def test_wrong_key_error_carries_mode_and_meter() -> None:
    with pytest.raises(DecryptError) as caught:
        decode_wireless(N21, keys=bytes(16))
    assert caught.value.security_mode == 5
    assert caught.value.meter.id == "12345678"
    assert "wrong key" in str(caught.value)


@pytest.mark.parametrize("mode", [2, 3])
def test_deprecated_des_modes(mode: int) -> None:
    # No public vector carries a DES telegram with its key, so this checks our reading of
    # EN 13757-3:2004 against the library's DES: mode 2 with a zero IV, mode 3 with M ‖ A.
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    key = bytes.fromhex("0123456789ABCDEF")
    iv = bytes(8) if mode == 2 else N21[2:10]
    encryptor = Cipher(TripleDES(key * 3), modes.CBC(iv)).encryptor()
    frame = bytearray(N21[:15] + encryptor.update(N21_PLAIN))
    frame[14] = (frame[14] & 0xE0) | mode
    telegram = decode_wireless(bytes(frame), keys=key)
    assert telegram.payload == N21_PLAIN
    assert telegram.decryption == "decrypted"
    with pytest.raises(DecryptError):
        decode_wireless(bytes(frame), keys=bytes(8))
    with pytest.raises(MissingKeyError):
        decode_wireless(bytes(frame), keys=N21_KEY)  # an AES key is no DES key


def test_mode_13_and_other_modes_are_unsupported() -> None:
    for mode in (8, 9, 10, 13):
        frame = bytearray(N21)
        frame[14] = (frame[14] & 0xE0) | mode
        with pytest.raises(UnsupportedError, match=f"security mode {mode}"):
            decode_wireless(bytes(frame), keys=N21_KEY)


def test_a_mode_that_names_no_encryption_is_left_to_the_record_decoder() -> None:
    frame = bytearray(PLAIN_7A)
    frame[14] = 0x18  # CF high byte: mode 24, a proprietary use of the field
    telegram = decode_wireless(bytes(frame))
    assert telegram.tpl.security_mode == 24
    assert (telegram.tpl.state, telegram.decryption) == ("ignored", "none")
    assert telegram.tpl.to_dict()["state"] == "ignored"
    assert telegram.payload == PLAIN_7A[15:]


def test_missing_blocks_are_cut_to_whole_blocks() -> None:
    frame = bytes((len(N21) - 1 - 5,)) + N21[1:-5]
    telegram = decode_wireless(frame, keys=N21_KEY)
    assert telegram.tpl.truncated == 11
    assert telegram.payload == N21_PLAIN[:16]


def test_manufacturer_specific_ci_is_passed_through() -> None:
    frame = bytes.fromhex("0E44A511785634123307A0") + b"\x01\x02\x03\x04"
    frame = bytes((len(frame) - 1,)) + frame[1:]
    telegram = decode_wireless(frame)
    assert telegram.payload_kind == "manufacturer"
    assert telegram.payload == b"\x01\x02\x03\x04"
    assert telegram.tpl is None


def test_unknown_ci_is_unsupported() -> None:
    frame = bytes((11,)) + PLAIN_7A[1:10] + b"\x81\x00"
    with pytest.raises(UnsupportedError, match="CI 0x81"):
        decode_wireless(frame)


def test_fragmented_afl_is_unsupported() -> None:
    # ELL 8C, then an AFL with "more fragments" and only the FCL
    frame = PLAIN_7A[:10] + bytes.fromhex("8C2000") + bytes.fromhex("900201407A")
    frame = bytes((len(frame) - 1,)) + frame[1:]
    with pytest.raises(UnsupportedError, match="fragment"):
        decode_wireless(frame)


def test_wired_mode_5_without_long_header_cannot_build_its_iv() -> None:
    with pytest.raises(DecodeError, match="long header"):
        decode_transport(N21[10:], keys=N21_KEY)


def test_link_dict_is_plain_json() -> None:
    import json

    telegram = decode_wireless(add_crc_format_a(N21), keys=N21_KEY)
    telegram.rssi = -71
    link = json.loads(json.dumps(telegram.link_dict()))
    assert link["format"] == "A"
    assert link["tpl"]["security_mode"] == 5
    assert link["tpl"]["state"] == "decrypted"
    assert link["rssi"] == -71
    assert N21_KEY not in json.dumps(link).upper()


# ---------------------------------------------------------------- fuzzing

TYPED = (MBusError,)


def _decode_quietly(data: bytes, **kwargs) -> None:
    with contextlib.suppress(TYPED):
        decode_wireless(data, **kwargs)


@pytest.mark.property
@given(st.binary(max_size=300), st.sampled_from(["auto", "A", "B", "stripped"]))
def test_fuzz_arbitrary_bytes_raise_only_typed_errors(data: bytes, fmt: str) -> None:
    _decode_quietly(data, keys=[N21_KEY, "0102030405060708"], frame_format=fmt)


@pytest.mark.property
@given(st.integers(0, len(N21) - 1), st.integers(1, 255), st.booleans())
def test_fuzz_mutated_telegrams_raise_only_typed_errors(at: int, xor: int, framed: bool) -> None:
    data = bytearray(add_crc_format_a(N21) if framed else N21)
    data[at] ^= xor
    _decode_quietly(bytes(data), keys=N21_KEY)


@pytest.mark.property
@given(st.binary(min_size=9, max_size=250))
def test_fuzz_crc_round_trips(body: bytes) -> None:
    frame = bytes((len(body),)) + body
    assert strip_crc(add_crc_format_a(frame), "A") == (frame, "A", b"")
    if len(frame) <= 252:
        assert strip_crc(add_crc_format_b(frame), "B") == (frame, "B", b"")


@pytest.mark.property
@given(st.binary(max_size=80), st.sampled_from([0x72, 0x7A, 0x78, 0x79, 0x8B, 0x6A, 0x73]))
def test_fuzz_transport_layer(body: bytes, ci: int) -> None:
    link_meter = MeterId("ELS", "12345678", 51, 3)
    with contextlib.suppress(TYPED):
        decode_transport(bytes((ci,)) + body, keys=N21_KEY, link_meter=link_meter)


@pytest.mark.property
@given(st.binary(min_size=10, max_size=120), st.sampled_from([0x8C, 0x8D, 0x8E, 0x8F, 0x90]))
def test_fuzz_ell_and_afl(body: bytes, ci: int) -> None:
    frame = PLAIN_7A[:10] + bytes((ci,)) + body
    frame = bytes((len(frame) - 1,)) + frame[1:]
    with contextlib.suppress(TYPED):
        decode_stripped(frame, keys=[N21_KEY])


@settings(max_examples=50)
@pytest.mark.property
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=64))
def test_fuzz_keys_never_decrypt_garbage_silently(key: bytes, junk: bytes) -> None:
    frame = N21[:15] + junk
    frame = bytes((len(frame) - 1,)) + frame[1:]
    try:
        telegram = decode_wireless(frame, keys=key)
    except TYPED:
        return
    assert telegram.payload[:2] == b"\x2f\x2f" or not junk
