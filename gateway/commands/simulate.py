"""``mbusgw simulate``: simulated M-Bus lines with real timing, as M-Bus/TCP converters or ptys.

Each line prints one JSON line on standard output when it is ready, e.g.
``{"line": 0, "tcp": "127.0.0.1:5000", "baud": 2400, "meters": 12}`` or ``{"line": 0, "pty":
"/dev/pts/3", …}``, so scripts can connect to it; the meters are listed on standard error. On
SIGINT/SIGTERM the wire statistics of every line (occupancy, gaps, collisions) are printed as one
JSON object (or written to ``--stats FILE``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mbusgw.gateway.settings import MBUS_BAUD_RATES

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


def run(args: argparse.Namespace) -> int:
    from mbusgw.gateway.commands._simulate import simulate

    return simulate(args)
