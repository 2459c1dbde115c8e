"""Link layer, ELL/AFL/TPL and decryption against the public vectors: every verified key
decrypts, every wrong key is a wrong key (never damage), every broken CRC is damage."""

from __future__ import annotations

import pytest
from wmbus_vectors import load_cases, unique, variants

from mbusgw.core.errors import (
    DecryptError,
    FrameError,
    LayoutUnknownError,
    MissingKeyError,
    UnsupportedError,
)
from mbusgw.core.wireless_decoder import WirelessDecoder, outcome_of
from mbusgw.core.wmbus import (
    add_crc_format_a,
    decode_transport,
    decode_wireless,
    strip_crc,
)
from mbusgw.gateway.compact_layouts import shipped_compact_layouts

WIRELESS = unique(variants("wireless"))


def by(predicate) -> list:
    found = [v for v in WIRELESS if predicate(v)]
    assert found, "the vector file no longer holds these cases"
    return found


def ids(items) -> list[str]:
    return [v.name for v in items]


def flip_bit(key_hex: str) -> str:
    key = bytearray.fromhex(key_hex)
    key[0] ^= 0x01
    return key.hex()


VERIFIED = by(lambda v: v.key_check == "ok")
WRONG_KEY = by(lambda v: v.key_check == "fail")
DAMAGED = by(lambda v: v.expected_kind == "error" and "CRC" in str(v.expected.get("error")))
NO_KEY = by(lambda v: v.expected_kind == "error" and v.expected.get("error") == "NO_AES_KEY")


@pytest.mark.parametrize("v", VERIFIED, ids=ids(VERIFIED))
def test_every_verified_key_decrypts(v) -> None:
    telegram = decode_wireless(v.telegram, keys=v.key)
    assert telegram.decryption == "decrypted"
    assert telegram.key is not None
    if telegram.tpl is not None and telegram.tpl.security_mode in (5, 7):
        assert telegram.payload[:2] == b"\x2f\x2f"


@pytest.mark.parametrize("v", VERIFIED, ids=ids(VERIFIED))
def test_a_wrong_key_is_reported_as_wrong_key(v) -> None:
    with pytest.raises(DecryptError) as caught:
        decode_wireless(v.telegram, keys=flip_bit(v.key))
    assert not isinstance(caught.value, MissingKeyError)
    assert outcome_of(caught.value) == "wrong_key"


@pytest.mark.parametrize("v", VERIFIED, ids=ids(VERIFIED))
def test_no_key_is_reported_as_missing_key(v) -> None:
    with pytest.raises(MissingKeyError):
        decode_wireless(v.telegram)


@pytest.mark.parametrize("v", VERIFIED, ids=ids(VERIFIED))
def test_the_right_key_among_wrong_ones_is_found(v) -> None:
    keys = [flip_bit(v.key), bytes(16).hex(), v.key]
    assert decode_wireless(v.telegram, keys=keys).decryption == "decrypted"


@pytest.mark.parametrize("v", WRONG_KEY, ids=ids(WRONG_KEY))
def test_upstream_wrong_keys_are_wrong_keys(v) -> None:
    with pytest.raises(DecryptError) as caught:
        decode_wireless(v.telegram, keys=v.key, frame_format=v.frame_format)
    assert outcome_of(caught.value) == "wrong_key"


@pytest.mark.parametrize("v", DAMAGED, ids=ids(DAMAGED))
def test_broken_crcs_and_truncation_are_damage(v) -> None:
    with pytest.raises(FrameError) as caught:
        decode_wireless(v.telegram, keys=v.key, frame_format=v.frame_format)
    assert outcome_of(caught.value) == "damaged"


@pytest.mark.parametrize("v", NO_KEY, ids=ids(NO_KEY))
def test_upstream_missing_keys(v) -> None:
    with pytest.raises(MissingKeyError):
        decode_wireless(v.telegram)


def test_a_flipped_mac_byte_is_caught_by_the_afl_mac() -> None:
    mode7 = by(lambda v: v.key_check == "ok" and v.classification.get("afl"))
    for v in mode7:
        frame, _, _ = strip_crc(v.telegram)
        mac = bytes.fromhex(v.classification["afl"]["mac"])
        at = frame.index(mac)
        damaged = frame[:at] + bytes((frame[at] ^ 0x40,)) + frame[at + 1 :]
        with pytest.raises(DecryptError, match="AFL MAC"):
            decode_wireless(damaged, keys=v.key)


PLAIN = by(
    lambda v: (
        v.key is None
        and v.expected_kind != "error"
        and v.classification.get("payload")
        in (
            "plaintext",
            "pre_decrypted",
            "plaintext_ell_decrypted_in_place",
            "compact_frame_ell_decrypted_in_place",
            "manufacturer_specific",
            "no_application_data",
        )
    )
)


@pytest.mark.parametrize("v", PLAIN, ids=ids(PLAIN))
def test_plaintext_and_pre_decrypted_telegrams_need_no_key(v) -> None:
    telegram = decode_wireless(v.telegram)
    payload = v.classification["payload"]
    if payload == "manufacturer_specific":
        assert telegram.payload_kind == "manufacturer"
    elif payload in ("pre_decrypted", "plaintext_ell_decrypted_in_place"):
        assert telegram.decryption == "pre-decrypted"
    assert telegram.meter.id in (v.classification.get("tpl_id"), v.classification["dll_id"])


@pytest.mark.parametrize("v", by(lambda v: v.classification.get("payload") == "pre_decrypted"))
def test_pre_decrypted_telegrams_are_not_decrypted_twice(v) -> None:
    telegram = decode_wireless(v.telegram, keys=bytes(range(16)))
    assert telegram.decryption == "pre-decrypted"
    assert telegram.key is None


RESERVED = by(lambda v: v.classification.get("payload") == "reserved_security_mode")
# Of those, the telegrams whose payload is plain records (the others are scrambled by their maker).
PLAIN_UNDER_RESERVED = {"wmbusmeters:HydrusIzarRSWarm"}


@pytest.mark.parametrize("v", RESERVED, ids=ids(RESERVED))
def test_proprietary_security_modes_decode_plain_records_only(v) -> None:
    # the transport layer leaves the word to the record decoder's rule
    assert decode_wireless(v.telegram).tpl.state == "ignored"
    if v.name in PLAIN_UNDER_RESERVED:
        assert WirelessDecoder().decode(v.telegram).application.configuration_ignored
    else:
        with pytest.raises(UnsupportedError, match="security mode"):
            WirelessDecoder().decode(v.telegram)


def test_identity_comes_from_the_long_header() -> None:
    long_header = by(
        lambda v: (
            v.classification.get("tpl") == "long"
            and v.classification["tpl_id"] != v.classification["dll_id"]
            and (v.key_check == "ok" or v.classification.get("payload") != "encrypted")
            and v.expected_kind != "error"
            and v.classification.get("payload") != "reserved_security_mode"
        )
    )
    for v in long_header:
        telegram = decode_wireless(v.telegram, keys=v.key)
        assert telegram.meter.id == v.classification["tpl_id"]
        assert telegram.meter.manufacturer == v.classification["tpl_mfct"]
        assert telegram.link.meter.id == v.classification["dll_id"]


def test_crc_strip_expectations() -> None:
    for v in by(lambda v: v.expected_kind == "crc_strip"):
        frame, fmt, trailing = strip_crc(v.telegram, v.frame_format)
        expected = bytes.fromhex(v.expected["crc_stripped_hex"])
        # upstream keeps a format B L-field as sent; ours counts the bytes that remain
        assert frame[0] == len(frame) - 1
        assert frame[1:] == expected[1 : len(frame)]
        assert fmt in ("A", "B")


def test_frames_with_crcs_round_trip_and_detect_every_damaged_block() -> None:
    for v in by(lambda v: v.frame == "A_with_crc"):
        frame, fmt, trailing = strip_crc(v.telegram)
        assert fmt == "A"
        rebuilt = add_crc_format_a(frame)
        assert rebuilt + trailing == v.telegram
        for at in range(len(rebuilt)):
            damaged = bytearray(rebuilt)
            damaged[at] ^= 0x08
            with pytest.raises(FrameError):
                strip_crc(bytes(damaged), "A")


def test_ell_and_afl_fields() -> None:
    for v in by(lambda v: "ell" in v.classification and v.expected_kind != "error"):
        ell_class = v.classification["ell"]
        try:
            telegram = decode_wireless(v.telegram, keys=v.key)
        except (MissingKeyError, UnsupportedError):
            continue
        assert telegram.ell.ci == int(ell_class["ci"], 16)
        assert telegram.ell.cc == int(ell_class["cc"], 16)
        assert telegram.ell.acc == int(ell_class["acc"], 16)
        if "sn" in ell_class:
            sn = int.from_bytes(bytes.fromhex(ell_class["sn"]), "little")
            assert telegram.ell.session_number == sn
            assert telegram.ell.encryption == ell_class["enc"]
        if "address_id" in ell_class:
            assert telegram.ell.address.id == ell_class["address_id"]
        afl_class = v.classification.get("afl")
        if afl_class:
            assert telegram.afl.message_counter == int.from_bytes(
                bytes.fromhex(afl_class["mcr"]), "little"
            )
            assert telegram.afl.mac.hex().upper() == afl_class["mac"]
            assert telegram.afl.more_fragments == afl_class["more_fragments"]


def test_kdf_reference_keys_of_cen_tr_17167() -> None:
    from mbusgw.core.crypto import AesKey, kdf_a

    kenc, kmac = kdf_a(
        AesKey("000102030405060708090A0B0C0D0E0F"),
        bytes.fromhex("B30A0000"),
        bytes.fromhex("78563412"),
    )
    assert kenc == AesKey("ECCF39D475D730B8284FDFDC1995D52F")
    assert kmac.hex().upper() == "C9CD19FF5A9AAD5A6BBDA13BD2C4C7AD"


def test_wired_frame_with_mode_5_decrypts_through_the_transport_layer() -> None:
    wired = [c for c in load_cases() if c["classification"].get("medium") == "wired" and c["key"]]
    assert wired
    for case in wired:
        frame = bytes.fromhex(case["telegram_hex"])
        tpl, payload, meter, key = decode_transport(frame[6:-2], keys=case["key"])
        assert payload[:2] == b"\x2f\x2f"
        assert tpl.security_mode == 5
        assert meter.id == case["classification"]["tpl_id"]
        with pytest.raises(DecryptError):
            decode_transport(frame[6:-2], keys=flip_bit(case["key"]))


def test_sequences_decode_their_last_telegram() -> None:
    sequences = [
        c
        for c in load_cases()
        if c["classification"].get("medium") == "wireless" and len(c["telegrams_hex"] or []) > 1
    ]
    assert sequences
    for case in sequences:
        decoder = WirelessDecoder(keys=case["key"])
        for raw in case["telegrams_hex"]:
            telegram = decoder.decode(bytes.fromhex(raw))
        assert telegram.payload_kind == "records"


def test_a_documented_layout_decodes_a_compact_frame_inside_ell_encryption() -> None:
    # exmbus "KAM 12345678 DataRecord unparse issue": ELL AES-CTR around a compact frame, with
    # the record headers of its format given by the test.
    from mbusgw.core.compact import CompactLayout

    (case,) = [c for c in load_cases() if c["test_name"] == "KAM 12345678 DataRecord unparse issue"]
    headers = bytes.fromhex(case["expected_json"]["format_frame_header_bytes"])
    decoder = WirelessDecoder(keys=case["key"])
    telegram_bytes = bytes.fromhex(case["telegram_hex"])
    with pytest.raises(LayoutUnknownError):
        decoder.decode(telegram_bytes)
    meter = decode_wireless(telegram_bytes, keys=case["key"]).meter
    decoder.add_layout(meter, CompactLayout.from_headers(headers))
    telegram = decoder.decode(telegram_bytes)  # the rebuilt frame's CRC checks both steps
    assert [r.dif_vif for r in telegram.application.records] == [
        "0405",
        "04FB8275",
        "04853C",
        "04FB82F53C",
        "01FD17",
    ]
    # the package ships the same layout (0x2274, from the full frame of exmbus' "decrypt and
    # encrypt" test), so the frame decodes without the documented headers too
    shipped = WirelessDecoder(keys=case["key"], known_layouts=shipped_compact_layouts())
    assert shipped.decode(telegram_bytes).application.to_dict() == telegram.application.to_dict()
