"""``mbusgw read``: read one meter and print its decoded telegrams.

``--address`` is a primary address (0-250) or an 8-digit secondary address (then the meter is
selected first). Every telegram of a multi-telegram meter is read (up to ``--telegrams``). The
telegrams are printed as tables, or as one JSON object with ``--json``; a progress bar on
standard error follows the telegrams as they come.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from mbusgw.gateway.commands._buscli import (
    ProgressBar,
    add_line_arguments,
    open_lines,
    run_reported,
    timing_from,
)
from mbusgw.gateway.meters import AddressingMode
from mbusgw.gateway.settings import MBUS_BAUD_RATES

if TYPE_CHECKING:
    from mbusgw.gateway.busrequests import MeterAddress
    from mbusgw.gateway.replies import ReadReply


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "read", help="read one meter", description=__doc__.split("\n\n", 1)[1]
    )
    add_line_arguments(parser, several=False)
    parser.add_argument("--address", required=True, help="primary 0-250 or secondary 8 digits")
    parser.add_argument("--baud", type=int, default=2400, choices=MBUS_BAUD_RATES)
    parser.add_argument("--telegrams", type=int, default=10, help="telegram limit (default 10)")
    parser.add_argument("--no-init", action="store_true", help="no SND_NKE before a primary read")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def parse_address(text: str) -> tuple[MeterAddress, AddressingMode]:
    from mbusgw.gateway.busrequests import MeterAddress

    if text.isdigit() and len(text) <= 3:
        return MeterAddress(primary=int(text)), AddressingMode.PRIMARY
    return MeterAddress(secondary=text.upper()), AddressingMode.SECONDARY


async def read_command(args: argparse.Namespace, bar: ProgressBar) -> ReadReply:
    # the bus modules load here, not while the command line is parsed (--help stays fast)
    import trio

    from mbusgw.gateway.bus import BusMaster
    from mbusgw.gateway.busrequests import ReadSettings

    address, mode = parse_address(args.address)
    settings = ReadSettings(modes=(mode,), telegram_limit=args.telegrams, init=not args.no_init)
    (line,) = open_lines(args, args.baud)
    bus = BusMaster(line, timing=timing_from(args))

    def telegram_read(count: int) -> None:
        bar.update(count / args.telegrams, f"{address.label(mode)}: {count} telegram(s)")

    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        bar.update(0.0, f"{address.label(mode)}: reading")
        reading = await bus.read(address, settings, on_telegram=telegram_read)
        bar.update(1.0, f"{address.label(mode)}: {len(reading.frames)} telegram(s)")
        nursery.cancel_scope.cancel()
    return reading


def print_reading(reading: ReadReply, as_json: bool) -> int:
    from mbusgw.core import MBusError, decode
    from mbusgw.gateway.commands._decode import print_table

    status = 0
    telegrams = []
    for raw in reading.frames:
        try:
            telegrams.append(decode(raw))
        except MBusError as error:
            print(f"read: telegram {raw.hex()} does not decode: {error}", file=sys.stderr)
            status = 1
    if as_json:
        summary = {
            "address": reading.address.label(reading.mode),
            "mode": reading.mode.value,
            "attempts": reading.attempts,
            "duration_s": round(reading.duration, 4),
            "complete": reading.complete,
            "telegrams": [t.to_dict() for t in telegrams],
        }
        print(json.dumps(summary, indent=2, default=str))
        return status
    for index, telegram in enumerate(telegrams):
        if index:
            print()
        print_table(telegram, sys.stdout)
    more = "" if reading.complete else " (limit reached, the meter has more)"
    print(
        f"\n{len(reading.frames)} telegram(s) in {reading.duration:.3f} s, "
        f"{reading.attempts} request(s){more}"
    )
    return status


def run(args: argparse.Namespace) -> int:
    bar = ProgressBar()
    reading, status = run_reported("read", bar, read_command, args, bar)
    if status:
        return status
    return print_reading(reading, args.json)
