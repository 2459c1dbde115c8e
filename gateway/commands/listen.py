"""``mbusgw listen RECEIVER... [--link-mode MODE] [--key HEX] [--keys FILE] [--json]``: decode the
telegrams that wireless M-Bus receivers hear.

A receiver is ``im871a:DEVICE`` (IMST iM871A), ``amb8465:DEVICE`` (Amber AMB8465), an optional
``@BAUD`` after the device; ``tcp:HOST:PORT`` (hex lines from a software radio such as
rtl-wmbus) or ``stdin``. Several receivers are heard at once; a telegram heard by more than one
within the duplicate window is printed once. A receiver silent for ``--silence`` seconds is
reopened and reset. Telegrams that cannot be decoded are reported on standard error with the
reason (missing key, wrong key, damaged, unsupported). ``--count N`` stops after N telegrams.
"""

from __future__ import annotations

import argparse
import sys

from mbusgw.gateway.settings import LINK_MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "listen",
        help="decode what wireless M-Bus receivers hear",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("receivers", nargs="+", metavar="RECEIVER")
    parser.add_argument("--link-mode", default="T1+C1", choices=LINK_MODES)
    parser.add_argument("--key", action="append", default=[], metavar="HEX")
    parser.add_argument("--keys", metavar="FILE", help="key file (CSV, .xlsx or .xls)")
    parser.add_argument("--json", action="store_true", help="one JSON object per telegram")
    parser.add_argument("--count", type=int, default=0, help="stop after this many telegrams")
    parser.add_argument("--silence", type=float, default=600.0, help="watchdog timeout (s)")
    parser.add_argument("--dedupe", type=float, default=10.0, help="duplicate window (s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import trio

    from mbusgw.gateway.commands._listen import listen

    return trio.run(listen, args, sys.stdout, sys.stderr)
