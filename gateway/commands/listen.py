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
import logging
import sys
from typing import TextIO

import trio

from mbusgw.core.jsonout import dumps
from mbusgw.core.wireless_decoder import WirelessDecoder, outcome_of
from mbusgw.gateway.commands.decode import load_keys, print_wireless
from mbusgw.gateway.compact_layouts import shipped_compact_layouts
from mbusgw.gateway.receivers import LINK_MODES, RadioFrame, make_receiver
from mbusgw.gateway.receivers.service import WirelessService


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


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    return trio.run(listen, args, out or sys.stdout, err or sys.stderr)


async def listen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        receivers = [
            make_receiver(spec, link_mode=args.link_mode) for spec in dict.fromkeys(args.receivers)
        ]
        keys = load_keys(args, err)
    except ValueError as error:
        print(error, file=err)
        return 2
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mbusgw.receivers").addHandler(handler)
    logging.getLogger("mbusgw.receivers").setLevel(logging.INFO)
    printed = 0
    with trio.CancelScope() as scope:

        def on_telegram(telegram, frame: RadioFrame) -> None:
            nonlocal printed
            if args.json:
                print(dumps({**telegram.to_dict(), "receiver": frame.receiver}), file=out)
            else:
                print(f"{frame.receiver}:", file=out)
                print_wireless(telegram, out)
            out.flush()
            printed += 1
            if args.count and printed >= args.count:
                scope.cancel()

        def on_error(error, frame: RadioFrame) -> None:
            reason = outcome_of(error).replace("_", " ")
            print(f"{frame.receiver}: {reason}: {error}", file=err)

        service = WirelessService(
            receivers,
            WirelessDecoder(keys=keys, known_layouts=shipped_compact_layouts()),
            on_telegram,
            silence_timeout=args.silence,
            dedupe_window=args.dedupe,
            on_error=on_error,
        )
        await service.run()
    logging.getLogger("mbusgw.receivers").removeHandler(handler)
    return 0
