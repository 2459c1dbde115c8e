"""The work of ``mbusgw decode`` (the command and its options: ``decode.py``), imported only
when the command runs."""

from __future__ import annotations

import argparse
import string
import sys
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from typing import TextIO

from mbusgw.core import MBusError, MissingKeyError, Telegram, decode, decode_application
from mbusgw.core.crypto import make_key
from mbusgw.core.errors import EncodeError
from mbusgw.core.frame import Discarded, FrameParser, LongFrame
from mbusgw.core.jsonout import dumps
from mbusgw.core.units import medium_name
from mbusgw.core.wireless_decoder import WirelessDecoder
from mbusgw.core.wmbus import decode_transport, security_mode_name, strip_crc
from mbusgw.gateway.compact_layouts import shipped_compact_layouts
from mbusgw.gateway.keys import (
    KeyFileError,
    KeySnapshot,
    KeyStore,
    MemoryKeyBackend,
    parse_key_file,
    with_entries,
)

HEX_DIGITS = set(string.hexdigits)


class BadHex(ValueError):
    pass


def parse_hex(text: str) -> bytes:
    digits = "".join(text.split())
    bad = next((c for c in digits if c not in HEX_DIGITS), None)
    if bad is not None:
        raise BadHex(f"{bad!r} is not a hexadecimal digit")
    if len(digits) % 2:
        raise BadHex(f"odd number of hex digits ({len(digits)})")
    return bytes.fromhex(digits)


def split_frames(data: bytes) -> Iterator[bytes | MBusError]:
    """The complete frames in ``data``, or the typed error for bytes that are not one."""
    parser = FrameParser()
    parser.feed(data)
    for event in parser.flush():
        if isinstance(event, LongFrame):
            yield event.raw
        elif isinstance(event, Discarded):
            yield event.error
        else:
            yield MBusError(f"{type(event).__name__} carries no application data", event.offset)


def format_value(record) -> str:
    value = record.value
    if isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, bytes):
        text = value.hex(" ")
    elif value is None:
        text = "-"
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    else:
        text = str(value)
    return text + (" (invalid)" if record.invalid else "")


def print_table(telegram: Telegram, out: TextIO) -> None:
    h = telegram.header
    parts = [f"CI 0x{telegram.ci:02X}"]
    if h.id is not None:
        parts += [f"id {h.id}", f"manufacturer {h.manufacturer}", f"version {h.version}"]
        parts.append(f"medium 0x{h.medium:02X} ({medium_name(h.medium)})")
    if h.access_number is not None:
        parts += [f"access {h.access_number}", f"status 0x{h.status:02X}"]
        if h.signature is not None:
            parts.append(f"signature 0x{h.signature:04X}")
    print("  ".join(parts), file=out)
    if telegram.configuration_ignored:
        print(
            f"configuration word 0x{h.signature:04X} ignored: its security mode "
            f"{(h.signature >> 8) & 0x1F} names no encryption, the payload is plain records",
            file=out,
        )
    if telegram.error is not None:
        code, text = telegram.error
        print(f"application error {code}: {text}", file=out)
    rows = [("#", "function", "stor", "tar", "sub", "quantity", "value", "unit", "DIF/VIF")]
    for index, record in enumerate(telegram.records):
        quantity = record.quantity
        if record.modifiers:
            quantity += " [" + ", ".join(record.modifiers) + "]"
        if record.record_error:
            quantity += f" (error: {record.record_error})"
        rows.append(
            (
                str(index),
                record.function,
                str(record.storage),
                str(record.tariff),
                str(record.subunit),
                quantity,
                format_value(record),
                record.unit,
                record.dif_vif,
            )
        )
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        numeric = {0, 2, 3, 4, 6}
        for row in rows:
            cells = [
                cell.rjust(width) if i in numeric else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            print("  ".join(cells).rstrip(), file=out)
    if telegram.more_records_follow:
        print("more records follow in the next telegram", file=out)


def report(source: str, error: Exception, err: TextIO) -> None:
    hint = " (give the key with --key or --keys)" if isinstance(error, MissingKeyError) else ""
    print(f"{source}: {type(error).__name__}: {error}{hint}", file=err)


class Session:
    """What one run shares between its frames: the output mode, the keys, and the wireless
    decoder (which learns compact-frame layouts from full frames)."""

    def __init__(self, as_json: bool, keys, frame_format: str = "auto") -> None:
        self.as_json = as_json
        self.keys = keys
        self.wireless = WirelessDecoder(
            keys=keys, frame_format=frame_format, known_layouts=shipped_compact_layouts()
        )
        self.frame_format = frame_format
        self.printed = False

    def emit(self, telegram, out: TextIO, table) -> None:
        if self.as_json:
            print(dumps(telegram.to_dict()), file=out)
            return
        if self.printed:
            print(file=out)
        table(telegram, out)
        self.printed = True


def is_wired(data: bytes) -> bool:
    """Wired frames start 68 L L 68 (or are a short frame or the E5 acknowledgement)."""
    if len(data) >= 4 and data[0] == 0x68 and data[3] == 0x68 and data[1] == data[2]:
        return True
    return data == b"\xe5" or (len(data) == 5 and data[0] == 0x10 and data[4] == 0x16)


def decode_input(
    source: str, text: str, as_json: bool, out: TextIO, err: TextIO, session: Session | None = None
) -> bool:
    """Decode every frame in ``text``; False if anything in it was bad."""
    session = session or Session(as_json, None)
    try:
        data = parse_hex(text)
    except BadHex as error:
        report(source, error, err)
        return False
    if not data:
        return True
    if is_wired(data):
        items, table = split_frames(data), print_wired
        decode_one = partial(decode_wired, keys=session.keys)
    else:
        items = split_telegrams(data, session.frame_format)
        decode_one, table = session.wireless.decode, print_wireless
    ok = True
    for item in items:
        try:
            if isinstance(item, MBusError):
                raise item
            telegram = decode_one(item)
        except MBusError as error:
            report(source, error, err)
            ok = False
            continue
        session.emit(telegram, out, table)
    return ok


def print_wired(telegram, out: TextIO) -> None:
    if isinstance(telegram, DecryptedWired):
        tpl = telegram.tpl
        print(
            f"security mode {tpl.security_mode} ({security_mode_name(tpl.security_mode)}), "
            f"{tpl.state}",
            file=out,
        )
        telegram = telegram.application
    print_table(telegram, out)


class DecryptedWired:
    """A wired frame whose transport layer was encrypted: its records and security."""

    def __init__(self, application: Telegram, tpl) -> None:
        self.application = application
        self.tpl = tpl

    def to_dict(self) -> dict:
        out = self.application.to_dict()
        out["security"] = {
            "mode": self.tpl.security_mode,
            "name": security_mode_name(self.tpl.security_mode),
            "state": self.tpl.state,
        }
        return out


def decode_wired(frame: bytes, keys=None):
    """A wired long frame; one with an encrypted long transport header is decrypted first."""
    if frame[6] == 0x72 and len(frame) >= 21 and (frame[18] & 0x1F):
        tpl, payload, _meter, _key = decode_transport(frame[6:-2], keys=keys)
        return DecryptedWired(decode_application(0x72, frame[7:19] + payload), tpl)
    return decode(frame)


def split_telegrams(data: bytes, frame_format: str) -> list[bytes]:
    """Cut a stream of wireless telegrams at their L-fields; bytes after the last telegram that
    cannot start another one stay with it (a receiver's RSSI byte, say)."""
    chunks = []
    while data:
        try:
            _, _, trailing = strip_crc(data, frame_format)
        except MBusError:
            chunks.append(data)  # the decoder reports (and counts) what is wrong with it
            break
        end = len(data) - len(trailing)
        if trailing and not (len(trailing) >= 11 and len(trailing) > trailing[0] >= 9):
            end = len(data)
        chunks.append(data[:end])
        data = data[end:]
    return chunks


def print_wireless(telegram, out: TextIO) -> None:
    link = telegram.link
    parts = [f"wireless format {link.format}", f"C 0x{link.control:02X} {link.control_name}"]
    if telegram.tpl is not None and telegram.tpl.payload_kind == "compact":
        parts.append(f"compact frame CI 0x{telegram.ci:02X} rebuilt")
    if telegram.ell is not None:
        parts.append(f"ELL 0x{telegram.ell.ci:02X}")
    if telegram.afl is not None:
        parts.append(f"AFL counter {telegram.afl.message_counter}")
    tpl = telegram.tpl
    if tpl is not None and tpl.configuration is not None:
        parts.append(f"security mode {tpl.security_mode} ({security_mode_name(tpl.security_mode)})")
    parts.append(f"payload {telegram.payload_kind}, {telegram.decryption}")
    if telegram.rssi is not None:
        parts.append(f"RSSI {telegram.rssi} dBm")
    print("  ".join(parts), file=out)
    if telegram.meter != link.meter:
        print(f"sent by {link.meter}", file=out)
    if telegram.application is not None:
        print_table(telegram.application, out)
    else:
        print(f"meter {telegram.meter}: {telegram.payload.hex(' ').upper()}", file=out)


def load_keys(args: argparse.Namespace, err: TextIO):
    """The key source of ``--key`` and ``--keys``, or None; raises ValueError (reported)."""
    explicit = []
    for text in args.key:
        try:
            explicit.append(make_key(text))
        except EncodeError as error:
            raise ValueError(f"--key: {error}") from None
    if not args.keys:
        return explicit or None
    try:
        with open(args.keys, "rb") as handle:
            entries = parse_key_file(handle.read(), args.keys)
    except OSError as error:
        raise ValueError(f"--keys: {error.strerror}: {args.keys}") from None
    except KeyFileError as error:
        for row in error.errors:
            print(f"{args.keys}: {row}", file=err)
        raise ValueError(f"--keys: {error}") from None
    store = KeyStore(MemoryKeyBackend(with_entries(KeySnapshot(), entries)[0]))

    def lookup(meter):
        return store.keys_for(meter) + explicit

    return lookup


def run(
    args: argparse.Namespace,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        keys = load_keys(args, err)
    except ValueError as error:
        print(error, file=err)
        return 2
    session = Session(args.json, keys, args.format)
    ok = True
    if args.hex == ["-"]:
        for number, line in enumerate(stdin, start=1):
            ok &= decode_input(f"line {number}", line, args.json, out, err, session)
    elif "-" in args.hex:
        print("- (standard input) cannot be mixed with hex arguments", file=err)
        return 2
    elif len(args.hex) > 1 and all(len("".join(text.split())) >= 22 for text in args.hex):
        # several whole telegrams (or frames), one per argument
        for number, text in enumerate(args.hex, start=1):
            ok &= decode_input(f"argument {number}", text, args.json, out, err, session)
    else:  # one frame, or byte tokens
        ok = decode_input("input", " ".join(args.hex), args.json, out, err, session)
    return 0 if ok else 1
