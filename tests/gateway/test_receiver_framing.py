"""Receiver framings, each fed three ways: all at once, byte by byte, and with garbage around."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbusgw.gateway.receivers import amb8465, im871a, make_receiver, parse_link_mode
from mbusgw.gateway.receivers.rawhex import HexDiscarded, HexLineCodec, HexTelegram, parse_line

TELEGRAM = bytes.fromhex(
    "2E4493157856341233037A2A0020255923C95AAA26D1B2E7493B013EC4A6F6D3529B520EDFF0EA6DEFC99D6D69EBF3"
)


def run(codec_factory, chunks: list[bytes]) -> list:
    codec = codec_factory()
    events = []
    for chunk in chunks:
        codec.feed(chunk)
        events += codec.events()
    return events + codec.flush()


def three_ways(codec_factory, data: bytes) -> list:
    at_once = run(codec_factory, [data])
    assert run(codec_factory, [data[i : i + 1] for i in range(len(data))]) == at_once
    assert run(codec_factory, [data[:7], data[7:20], data[20:]]) == at_once
    return at_once


# ---------------------------------------------------------------- iM871A HCI


def test_hci_crc_known_answer() -> None:
    assert im871a.crc16_x25(b"123456789") == 0x906E


def test_hci_frames_with_every_attachment() -> None:
    indication = im871a.build_frame(
        im871a.RADIOLINK, im871a.WMBUSMSG_IND, TELEGRAM[1:], rssi=200, timestamp=0x01020304
    )
    ping = im871a.build_frame(im871a.DEVMGMT, im871a.PING_RSP, crc=False)
    data = b"\x00\x13" + ping + indication + b"\xa5\x0f\x01\x00"
    events = three_ways(im871a.HciCodec, data)
    assert events[0] == im871a.HciDiscarded(b"\x00\x13", "no start byte")
    assert events[1] == im871a.HciMessage(im871a.DEVMGMT, im871a.PING_RSP, b"")
    message = events[2]
    assert (message.rssi, message.timestamp) == (200, 0x01020304)
    assert im871a.telegram_of(message) == TELEGRAM
    assert events[3] == im871a.HciDiscarded(b"\xa5\x0f\x01\x00", "unknown endpoint 15")


def test_hci_damaged_frame_is_discarded_and_the_next_one_found() -> None:
    good = im871a.build_frame(im871a.RADIOLINK, im871a.WMBUSMSG_IND, TELEGRAM[1:], rssi=100)
    damaged = bytearray(good)
    damaged[10] ^= 0x01
    events = three_ways(im871a.HciCodec, bytes(damaged) + good)
    assert isinstance(events[0], im871a.HciDiscarded)
    assert events[0].reason == "CRC mismatch"
    assert bytes(events[0].data) == bytes(damaged)
    assert im871a.telegram_of(events[1]) == TELEGRAM


def test_hci_set_config_for_each_link_mode() -> None:
    assert im871a.set_config_payload("T1+C1") == bytes.fromhex("00020A300100")
    assert im871a.set_config_payload("S1")[2] == 0x00
    assert im871a.set_config_payload("C1")[2] == 0x06
    assert im871a.rssi_dbm(45) == -100
    assert im871a.rssi_dbm(255) == 0


@pytest.mark.property
@given(st.binary(max_size=200), st.integers(1, 20))
def test_fuzz_hci_codec(data: bytes, step: int) -> None:
    at_once = run(im871a.HciCodec, [data])
    assert run(im871a.HciCodec, [data[i : i + step] for i in range(0, len(data), step)]) == at_once
    consumed = sum(len(e.data) if isinstance(e, im871a.HciDiscarded) else 0 for e in at_once)
    assert consumed <= len(data)


# ---------------------------------------------------------------- AMB8465


def test_amber_command_and_data_indication() -> None:
    assert amb8465.command(amb8465.SERIALNO) == bytes.fromhex("FF0B00F4")
    confirm = amb8465.command(amb8465.SET_MODE | amb8465.CONFIRM, b"\x00")
    body = bytes((0xFF, amb8465.DATA_IND, len(TELEGRAM) - 1)) + TELEGRAM[1:] + b"\xd0"
    indication = body + bytes((amb8465.checksum(body),))
    events = three_ways(lambda: amb8465.AmberCodec(rssi=True), confirm + indication)
    assert events[0] == amb8465.AmberCommand(0x84, b"\x00")
    assert events[1] == amb8465.AmberTelegram(TELEGRAM, 0xD0)
    assert amb8465.rssi_dbm(0xD0) == -98
    assert amb8465.rssi_dbm(0x20) == -58


def test_amber_transparent_telegrams_with_and_without_rssi() -> None:
    events = three_ways(
        lambda: amb8465.AmberCodec(rssi=True), TELEGRAM + b"\x10" + TELEGRAM + b"\x11"
    )
    assert events == [amb8465.AmberTelegram(TELEGRAM, 0x10), amb8465.AmberTelegram(TELEGRAM, 0x11)]
    assert three_ways(lambda: amb8465.AmberCodec(rssi=False), TELEGRAM) == [
        amb8465.AmberTelegram(TELEGRAM)
    ]


def test_amber_bad_checksum_and_unknown_commands_are_discarded() -> None:
    frame = bytearray(amb8465.command(amb8465.RESET | amb8465.CONFIRM, b"\x00"))
    frame[-1] ^= 0xFF
    events = run(lambda: amb8465.AmberCodec(rssi=False), [bytes(frame)])
    assert events[0] == amb8465.AmberDiscarded(b"\xff", "checksum mismatch")
    events = run(lambda: amb8465.AmberCodec(rssi=False), [b"\xff\x7e\x00\x81"])
    assert events[0].reason == "unknown command 0x7E"


@pytest.mark.property
@given(st.binary(max_size=200), st.integers(1, 20), st.booleans())
def test_fuzz_amber_codec(data: bytes, step: int, rssi: bool) -> None:
    def factory():
        return amb8465.AmberCodec(rssi=rssi)

    at_once = run(factory, [data])
    assert run(factory, [data[i : i + step] for i in range(0, len(data), step)]) == at_once


# ---------------------------------------------------------------- hex lines


def test_hex_lines_plain_rssi_rtl_wmbus_and_junk() -> None:
    text = (
        "# comment\r\n"
        f"{TELEGRAM.hex()}\r\n"
        f"0x{TELEGRAM.hex().upper()};-67.5\n"
        f"T1;1;1;2019-02-24 19:59:17.000;97;102;12345678;0x{TELEGRAM.hex()}\n"
        f"C1;0;1;2019-02-24 19:59:17.000;97;102;12345678;0x{TELEGRAM.hex()}\n"
        "zz\n"
        "\n"
        "abc"
    ).encode()
    events = three_ways(HexLineCodec, text)
    assert events[0] == HexTelegram(TELEGRAM)
    assert events[1] == HexTelegram(TELEGRAM, -67.5)
    assert events[2] == HexTelegram(TELEGRAM, None, "stripped", "T1")
    assert isinstance(events[3], HexDiscarded) and "CRC" in events[3].reason
    assert isinstance(events[4], HexDiscarded)
    assert isinstance(events[5], HexDiscarded)  # "abc" at the end: odd number of digits
    assert len(events) == 6


N21_LINE = TELEGRAM.hex().encode() + b"\n"


def test_overlong_lines_are_cut() -> None:
    events = run(HexLineCodec, [b"0" * 5000 + b"\n" + N21_LINE])
    assert [type(e) for e in events] == [HexDiscarded, HexTelegram]


@pytest.mark.property
@given(st.binary(max_size=300))
def test_fuzz_hex_lines(data: bytes) -> None:
    at_once = run(HexLineCodec, [data])
    assert run(HexLineCodec, [data[i : i + 1] for i in range(len(data))]) == at_once
    for line in data.split(b"\n"):
        parse_line(line)


# ---------------------------------------------------------------- configuration


def test_receiver_specs_and_link_modes() -> None:
    assert parse_link_mode("c1+t1") == "T1+C1"
    assert parse_link_mode(" s1 ") == "S1"
    with pytest.raises(ValueError):
        parse_link_mode("N1a")
    assert make_receiver("amb8465:/dev/ttyUSB1@19200", link_mode="C1").link_mode == "C1"
    assert make_receiver("stdin").restartable is False
    for bad in ("im871a", "tcp:localhost", "serial:/dev/x", "stdin:x", "amb8465:/dev/x@fast"):
        with pytest.raises(ValueError):
            make_receiver(bad)
