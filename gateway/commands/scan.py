"""``mbusgw scan``: find the meters on one or more M-Bus lines.

``--mode primary`` probes the addresses 0-250; ``--mode secondary`` walks the ID space with
wildcard selections (``--hex`` when IDs may contain the digits A-E). Give several ``--port`` /
``--tcp`` options to scan those lines in parallel, and several ``--baud`` options to scan at each
rate in turn (a converter on TCP runs at the one rate it is set to). A progress bar runs on
standard error; the meters found are printed as a table, or as JSON with ``--json`` (identity,
the telegram, and the meter-list row to install them). ``--state FILE`` saves the scan as it goes
and resumes it from there when run again (one line, one rate).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mbusgw.gateway.commands._buscli import (
    ProgressBar,
    add_line_arguments,
    open_lines,
    run_reported,
    timing_from,
)
from mbusgw.gateway.settings import MBUS_BAUD_RATES, ConfigError

if TYPE_CHECKING:
    from mbusgw.gateway.bus import BusMaster
    from mbusgw.gateway.scan import (
        FoundMeter,
        PrimaryScan,
        ScanProgress,
        ScanReport,
        SecondaryScan,
    )

STATE_SAVE_INTERVAL = 2.0  # seconds between saves of --state


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scan", help="find the meters on M-Bus lines", description=__doc__.split("\n\n", 1)[1]
    )
    add_line_arguments(parser, several=True)
    parser.add_argument("--mode", choices=("primary", "secondary"), required=True)
    parser.add_argument(
        "--baud",
        type=int,
        action="append",
        choices=MBUS_BAUD_RATES,
        help="baud rate (repeat to scan at several; default 2400)",
    )
    parser.add_argument("--hex", action="store_true", help="IDs may contain the digits A-E")
    parser.add_argument("--json", action="store_true", help="print the meters found as JSON")
    parser.add_argument("--state", type=Path, help="save the scan here; resume from it")
    parser.set_defaults(func=run)


class _Progress:
    """Combines the progress of parallel lines into one bar."""

    def __init__(self, bar: ProgressBar) -> None:
        self._bar = bar
        self._lines: dict[str, ScanProgress] = {}

    def __call__(self, progress: ScanProgress) -> None:
        self._lines[progress.interface] = progress
        lines = self._lines.values()
        done = sum(p.done for p in lines) / len(self._lines)
        etas = [p.eta for p in lines if p.eta is not None]
        found = sum(p.found for p in lines)
        probes = sum(p.probes for p in lines)
        text = f"{progress.baud} baud  found {found}  probes {probes}  at {progress.current}"
        self._bar.update(done, text, max(etas) if etas else None)


def _load_state(path: Path, mode: str, hex_digits: bool) -> PrimaryScan | SecondaryScan:
    from mbusgw.gateway.scan import PrimaryScan, SecondaryScan

    if path.exists():
        data = json.loads(path.read_text())
        if data.get("kind") != mode:
            raise ConfigError({"state": f"{path} holds a {data.get('kind')} scan, not {mode}"})
        return PrimaryScan.from_dict(data) if mode == "primary" else SecondaryScan.from_dict(data)
    return PrimaryScan() if mode == "primary" else SecondaryScan.start(hex_digits=hex_digits)


async def _resumable(
    bus: BusMaster, scan: PrimaryScan | SecondaryScan, path: Path, progress: _Progress
) -> ScanReport:
    import trio

    from mbusgw.gateway.scan import ScanReport

    saved = trio.current_time()

    def save_now_and_then(update: ScanProgress) -> None:
        nonlocal saved
        progress(update)
        if trio.current_time() - saved >= STATE_SAVE_INTERVAL:
            path.write_text(json.dumps(scan.to_dict()))
            saved = trio.current_time()

    try:
        await scan.run(bus, save_now_and_then)
    finally:
        path.write_text(json.dumps(scan.to_dict()))
    report = ScanReport()
    report.add(scan, bus.name)
    return report


async def scan_command(args: argparse.Namespace, bar: ProgressBar) -> ScanReport:
    # the bus modules load here, not while the command line is parsed (--help stays fast)
    import trio

    from mbusgw.gateway.bus import BusMaster
    from mbusgw.gateway.scan import scan_lines

    bauds = args.baud or [2400]
    progress = _Progress(bar)
    buses = [BusMaster(line, timing=timing_from(args)) for line in open_lines(args, bauds[0])]
    async with trio.open_nursery() as nursery:
        for bus in buses:
            await nursery.start(bus.run)
        if args.state is not None:
            if len(buses) != 1 or len(bauds) != 1:
                raise ConfigError({"state": "a resumable scan covers one line at one baud rate"})
            scan = _load_state(args.state, args.mode, args.hex)
            report = await _resumable(buses[0], scan, args.state, progress)
        else:
            report = await scan_lines(
                buses, args.mode, bauds=bauds, hex_digits=args.hex, progress=progress
            )
        nursery.cancel_scope.cancel()
    return report


def print_found(found: list[FoundMeter], as_json: bool) -> None:
    if as_json:
        rows = [{**meter.to_dict(), "install": meter.install_row()} for meter in found]
        print(json.dumps(rows, indent=2))
        return
    print(f"{'ID':8}  MAN  VER  MEDIUM  PRIMARY  BAUD  INTERFACE")
    for meter in found:
        ident = meter.identity
        primary = "-" if meter.primary is None else str(meter.primary)
        print(
            f"{ident.id:8}  {ident.manufacturer:3}  {ident.version:3}  0x{ident.medium:02X}    "
            f"{primary:>7}  {meter.baud:4}  {meter.interface}"
        )
    print(f"{len(found)} meter(s) found")


def run(args: argparse.Namespace) -> int:
    bar = ProgressBar()
    report, status = run_reported("scan", bar, scan_command, args, bar)
    if status == 0:
        for problem in report.unresolved:
            print(f"scan: unresolved {problem}", file=sys.stderr)
        print_found(report.found, args.json)
    return status
