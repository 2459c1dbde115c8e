"""A configuration word whose security mode names no encryption (reserved, or 16-31: a
proprietary use of the word): one rule for the wired read path (``decode``), the transport layer
(``decode_transport``) and wireless telegrams — plain records decode, flagged
``configuration_ignored``; anything else is unsupported.

Frames: libmbus' example_data_01 (tests/data/libmbus, BSD-3-Clause), whose word is 27 B6 (mode
22), and the public wireless vectors (tests/data/wmbus, see its README for sources and licences).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wmbus_vectors import load_cases

from mbusgw.core import UnsupportedError, decode, decode_application
from mbusgw.core.records import IGNORABLE_SECURITY_MODES
from mbusgw.core.wireless_decoder import WirelessDecoder, outcome_of
from mbusgw.core.wmbus import decode_transport

EXAMPLE = Path(__file__).parent.parent / "data" / "libmbus" / "test-frames" / "example_data_01.hex"


def example() -> bytes:
    return bytes.fromhex("".join(EXAMPLE.read_text().split()))


def with_word(frame: bytes, word: bytes, records: bytes | None = None) -> bytes:
    """The frame with another configuration word (and records), its checksum made good."""
    body = bytearray(frame[4:-2])
    body[13:15] = word
    if records is not None:
        body[15:] = records
    return bytes((0x68, len(body), len(body), 0x68)) + bytes(body) + bytes((sum(body) & 0xFF, 0x16))


def case(source_file: str, name: str) -> bytes:
    (found,) = [
        c for c in load_cases() if (c["source_file"], c["test_name"]) == (source_file, name)
    ]
    return bytes.fromhex(found["telegram_hex"])


def test_the_modes_that_name_no_encryption() -> None:
    expected = {4, 6, 11, 12, 14, *range(16, 32)}
    assert expected == IGNORABLE_SECURITY_MODES


@pytest.mark.parametrize("word", ["27B6", "FFFF", "0004"], ids=["mode22", "mode31", "mode4"])
def test_plain_records_under_such_a_word_decode_flagged(word: str) -> None:
    frame = with_word(example(), bytes.fromhex(word))
    telegram = decode(frame)
    assert telegram.configuration_ignored
    assert telegram.to_dict()["configuration_ignored"] is True
    assert [r.quantity for r in telegram.records] == [
        "energy",
        "volume",
        "power",
        "volume_flow",
        "flow_temperature",
        "return_temperature",
    ]
    assert telegram.records[0].value == 1389817000


def test_the_real_frame_decodes_the_same_through_the_transport_layer() -> None:
    frame = example()
    tpl, payload, meter, key = decode_transport(frame[6:-2])
    assert (tpl.security_mode, tpl.state, key) == (22, "ignored", None)
    assert meter.id == "03575845"
    via_transport = decode_application(0x72, frame[7:19] + payload)
    assert via_transport.configuration_ignored
    assert [r.to_dict() for r in via_transport.records] == [
        r.to_dict() for r in decode(frame).records
    ]


def test_such_a_word_over_a_payload_that_is_not_records_is_unsupported() -> None:
    frame = with_word(example(), bytes.fromhex("27B6"), bytes.fromhex("3F0102"))
    with pytest.raises(UnsupportedError, match="security mode 22, which names no encryption"):
        decode(frame)
    frame = with_word(example(), bytes.fromhex("27B6"), bytes.fromhex("0413"))
    with pytest.raises(UnsupportedError):
        decode(frame)


@pytest.mark.parametrize("word", ["0000", "0005", "F000", "000F"])  # wire order, LSB first
def test_other_words_are_not_flagged(word: str) -> None:
    # no encryption, mode 5 (a pre-decrypted or decrypted payload), bits 4-7 only, mode 15
    telegram = decode(with_word(example(), bytes.fromhex(word)))
    assert not telegram.configuration_ignored
    assert "configuration_ignored" not in telegram.to_dict()


def test_wireless_telegram_with_proprietary_mode_decodes_its_plain_records() -> None:
    # short TPL header, word 10 D8
    telegram = WirelessDecoder().decode(case("drivers/src/hydrus.xmq", "HydrusIzarRSWarm"))
    assert telegram.tpl.security_mode == 24 and telegram.tpl.state == "ignored"
    assert telegram.decryption == "none"
    application = telegram.application
    assert application.configuration_ignored
    assert application.header.signature == 0xD810
    # the values wmbusmeters' driver gives: total_m3, total_at_date_m3, at_date
    assert [str(r.value) for r in application.records] == ["49.373", "2021-03-31", "48.002"]
    assert telegram.to_dict()["configuration_ignored"] is True


def test_wireless_telegram_with_proprietary_mode_and_no_records_stays_unsupported() -> None:
    # mode 21 over a proprietary payload
    decoder = WirelessDecoder()
    with pytest.raises(UnsupportedError) as caught:
        decoder.decode(case("drivers/src/sharky.xmq", "Heat"))
    assert outcome_of(caught.value) == "unsupported"
    (diagnosis,) = decoder.diagnoses().values()
    assert diagnosis.status == "unsupported"
