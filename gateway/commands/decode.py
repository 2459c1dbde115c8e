"""``mbusgw decode [--json] [--key HEX] [--keys FILE] HEX...``: decode M-Bus frames given as hex.

Each argument of 11 bytes or more is a frame (or several frames in a row); shorter arguments
are joined and read as one stream of hex (spaces and case do not matter), so a frame may also
be given as many byte tokens. ``-`` reads standard input instead, one frame per line. Wired
long frames (68 L L 68) and wireless telegrams (L-field first, with or without their block
CRCs) are told apart by their first bytes; a wireless telegram gets a ``"link"`` object
(format, ELL/AFL/TPL fields, security).
Encrypted telegrams are decrypted with ``--key`` (repeatable) or the keys of a key file
(``--keys``: CSV, .xlsx or .xls). Compact frames are decoded with the layout of an earlier full
frame of the same meter in the same run, or with a layout the package ships for the meter's
manufacturer. A frame whose configuration word names no encryption (a reserved or proprietary
security mode) decodes as plain records when it holds them, flagged "configuration_ignored",
exactly as ``mbusgw read`` decodes it. A bad frame is reported on standard error with its
typed error and byte offset, and the exit status is 1.
"""

from __future__ import annotations

import argparse
from typing import TextIO

# core.wmbus.FRAME_FORMATS, named here so that --help does not load the compiled core (a test
# keeps the two equal)
FRAME_FORMATS = ("auto", "A", "B", "stripped")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decode",
        help="decode M-Bus long frames given as hex",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per frame")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="HEX",
        help="key for encrypted telegrams (32 hex digits; 16 for DES), may be repeated",
    )
    parser.add_argument(
        "--keys",
        metavar="FILE",
        help="key file: CSV, .xlsx or .xls with Address, Key, Manufacturer, DeviceType, Version",
    )
    parser.add_argument(
        "--format",
        choices=FRAME_FORMATS,
        default="auto",
        help="wireless frame format: A or B with block CRCs, stripped without (default: detect)",
    )
    parser.add_argument("hex", nargs="+", metavar="HEX", help="frame bytes as hex, or - for stdin")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, **streams: TextIO | None) -> int:
    """``streams``: ``stdin``, ``out``, ``err`` in place of the process's own (for tests)."""
    from mbusgw.gateway.commands._decode import run as decode

    return decode(args, **streams)
