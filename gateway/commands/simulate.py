"""``mbusgw simulate``: simulated M-Bus lines with real timing, as M-Bus/TCP converters or ptys.

Each line prints one JSON line on standard output when it is ready, e.g.
``{"line": 0, "tcp": "127.0.0.1:5000", "baud": 2400, "meters": 12}`` or ``{"line": 0, "pty":
"/dev/pts/3", …}``, so scripts can connect to it; the meters are listed on standard error. On
SIGINT/SIGTERM the wire statistics of every line (occupancy, gaps, collisions) are printed as one
JSON object (or written to ``--stats FILE``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import trio

from mbusgw.gateway.simulator import (
    SimLine,
    SimMeter,
    default_meters,
    make_meter,
    random_ids,
    scan_population,
    serve_pty,
    serve_tcp,
)
from mbusgw.gateway.transport import MBUS_BAUD_RATES, parse_host_port

POPULATIONS = ("default", "random", "sequential", "pairs", "median")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run simulated M-Bus lines (TCP converter or pty)",
        description=__doc__.split("\n\n", 1)[1],
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        default="127.0.0.1:0",
        help="serve as M-Bus/TCP converter(s); line k gets PORT+k (0: free ports)",
    )
    where.add_argument("--pty", action="store_true", help="serve each line on a pseudo-terminal")
    parser.add_argument("--lines", type=int, default=1, help="number of lines (default 1)")
    parser.add_argument("--baud", type=int, default=2400, choices=MBUS_BAUD_RATES)
    parser.add_argument("--meters", type=int, default=12, help="meters per line (default 12)")
    parser.add_argument(
        "--population",
        choices=POPULATIONS,
        default="default",
        help="default: a realistic mix with primary addresses; random, "
        "sequential, pairs: one model with secondary IDs only (for scans); "
        "median: the median-size frame at primary addresses 1…N",
    )
    parser.add_argument("--hex", action="store_true", help="IDs may contain the digits A-E")
    parser.add_argument(
        "--delay",
        type=float,
        default=None,
        help="answer delay of every meter in seconds (default: per population)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--echo", action="store_true", help="echo every request (converter fault)")
    parser.add_argument(
        "--silent",
        type=int,
        action="append",
        default=[],
        metavar="ADDR",
        help="the meter at this primary address never answers",
    )
    parser.add_argument(
        "--slow",
        action="append",
        default=[],
        metavar="ADDR:SECONDS",
        help="the meter at this primary address answers this much later",
    )
    parser.add_argument(
        "--duplicate",
        type=int,
        action="append",
        default=[],
        metavar="ADDR",
        help="add a second meter at this primary address",
    )
    parser.add_argument("--stats", type=Path, help="write the wire statistics here on exit")
    parser.set_defaults(func=run)


def build_meters(args: argparse.Namespace, line: int) -> list[SimMeter]:
    seed = args.seed * 1000 + line
    if args.population == "default":
        meters = default_meters(args.meters, seed=seed)
    elif args.population == "median":
        meters = scan_population(args.meters, seed=seed, answer_jitter=0.0)
        for address, meter in enumerate(meters, start=1):
            meter.primary = address if address <= 250 else None
    else:
        meters = scan_population(args.meters, seed=seed, style=args.population, hex_digits=args.hex)
    if args.delay is not None:
        for meter in meters:
            meter.answer_delay = args.delay
    by_address = {m.primary: m for m in meters if m.primary is not None}
    for address in args.silent:
        by_address[address].silent = True
    for spec in args.slow:
        address, _, seconds = spec.partition(":")
        by_address[int(address)].extra_delay = float(seconds)
    taken = {m.identity.id for m in meters}
    spare = (i for i in random_ids(len(meters) + 8, seed=seed + 7) if i not in taken)
    for address in args.duplicate:
        if address not in by_address:
            raise KeyError(address)
        meters.append(
            make_meter("kamstrup_382_005", next(spare), primary=address, seed=seed + address)
        )
    return meters


def describe(index: int, line: SimLine) -> str:
    rows = [f"line {index}: {len(line.meters)} meters at {line.baud} baud"]
    for m in line.meters:
        ident = m.identity
        primary = "-" if m.primary is None else str(m.primary)
        rows.append(
            f"  {primary:>3} {ident.id} {ident.manufacturer} v{ident.version} "
            f"medium 0x{ident.medium:02X} {m.telegrams} telegram(s) {m.template.name}"
        )
    return "\n".join(rows)


async def serve(args: argparse.Namespace, lines: list[SimLine]) -> None:
    host, first_port = parse_host_port(args.tcp)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for k, line in enumerate(lines):
                info = {"line": k, "baud": line.baud, "meters": len(line.meters)}
                if args.pty:
                    info["pty"] = await nursery.start(serve_pty, line)
                else:
                    port = await nursery.start(
                        serve_tcp, line, host, first_port + k * bool(first_port)
                    )
                    info["tcp"] = f"{host}:{port}"
                print(describe(k, line), file=sys.stderr)
                print(json.dumps(info), flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def run(args: argparse.Namespace) -> int:
    if args.lines < 1 or args.meters < 1:
        print("simulate: --lines and --meters must be at least 1", file=sys.stderr)
        return 2
    try:
        lines = [
            SimLine(build_meters(args, k), args.baud, echo=args.echo, name=f"sim{k}", seed=k)
            for k in range(args.lines)
        ]
    except KeyError as exc:
        print(f"simulate: no meter at primary address {exc}", file=sys.stderr)
        return 2
    trio.run(serve, args, lines)
    stats = {line.name: line.stats.as_dict() for line in lines}
    text = json.dumps(stats, indent=2)
    if args.stats:
        args.stats.write_text(text + "\n")
    else:
        print(text, flush=True)
    return 0
