"""``mbusgw decode [--json] HEX...``: decode wired M-Bus long frames given as hex.

The arguments are joined and read as one stream of hex (spaces and case do not matter), so a
frame may be given as one argument or as many byte tokens, and several frames may follow each
other. ``-`` reads standard input instead, one frame per line. A bad frame is reported on
standard error with its typed error and byte offset, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import string
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import TextIO

from mbusgw.core import MBusError, Telegram, decode
from mbusgw.core.frame import Discarded, FrameParser, LongFrame
from mbusgw.core.units import medium_name

HEX_DIGITS = set(string.hexdigits)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decode",
        help="decode M-Bus long frames given as hex",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per frame")
    parser.add_argument("hex", nargs="+", metavar="HEX", help="frame bytes as hex, or - for stdin")
    parser.set_defaults(func=run)


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
    print(f"{source}: {type(error).__name__}: {error}", file=err)


def decode_input(source: str, text: str, as_json: bool, out: TextIO, err: TextIO) -> bool:
    """Decode every frame in ``text``; False if anything in it was bad."""
    try:
        data = parse_hex(text)
    except BadHex as error:
        report(source, error, err)
        return False
    if not data:
        return True
    ok = True
    first = True
    for item in split_frames(data):
        if isinstance(item, MBusError):
            report(source, item, err)
            ok = False
            continue
        try:
            telegram = decode(item)
        except MBusError as error:
            report(source, error, err)
            ok = False
            continue
        if as_json:
            print(telegram.to_json(), file=out)
        else:
            if not first:
                print(file=out)
            print_table(telegram, out)
        first = False
    return ok


def run(
    args: argparse.Namespace,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    err = err or sys.stderr
    ok = True
    if args.hex == ["-"]:
        for number, line in enumerate(stdin, start=1):
            ok &= decode_input(f"line {number}", line, args.json, out, err)
    elif "-" in args.hex:
        print("- (standard input) cannot be mixed with hex arguments", file=err)
        return 2
    else:
        ok = decode_input("input", " ".join(args.hex), args.json, out, err)
    return 0 if ok else 1
