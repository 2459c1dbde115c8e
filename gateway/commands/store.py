"""``mbusgw store stats|export|check``: look into the store from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TextIO

from mbusgw.gateway.cells import CsvWriter
from mbusgw.gateway.commands._store_common import (
    add_data_dir,
    iso,
    open_store,
    parse_time,
    reports_errors,
)
from mbusgw.gateway.errors import NotFound

if TYPE_CHECKING:
    from mbusgw.gateway.store import Store

EXPORT_COLUMNS = (
    "meter",
    "series",
    "quantity",
    "unit",
    "description",
    "received_at",
    "meter_time",
    "value",
    "kind",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("store", help="statistics, exports and checks of the store")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    stats = actions.add_parser("stats", help="sizes, series, values, oldest and newest reading")
    add_data_dir(stats)
    stats.set_defaults(func=run_stats)

    export = actions.add_parser(
        "export",
        help="a meter's values in a time range",
        description="Print a meter's values, oldest first. Times are ISO 8601, UTC unless they "
        "carry an offset; a bare date for --to includes that whole day.",
    )
    export.add_argument("--meter", required=True, help="the meter's name in the store")
    export.add_argument("--from", dest="since", type=parse_time, help="first time (inclusive)")
    export.add_argument(
        "--to", dest="until", type=lambda t: parse_time(t, end_of_day=True), help="last time"
    )
    export.add_argument("--csv", action="store_true", help="CSV instead of a table")
    add_data_dir(export)
    export.set_defaults(func=run_export)

    check = actions.add_parser("check", help="decode every record and check every reference")
    add_data_dir(check)
    check.set_defaults(func=run_check)


@reports_errors("store stats")
def run_stats(args: argparse.Namespace) -> int:
    with open_store(args, readonly=True) as store:
        stats = store.stats()
    per_value = stats.used_bytes / stats.values if stats.values else 0.0
    rows = [
        ("file", stats.path),
        (
            "file size",
            f"{stats.file_bytes / 2**20:.1f} MiB (map {stats.map_bytes / 2**20:.0f} MiB)",
        ),
        ("in use", f"{stats.used_bytes / 2**20:.1f} MiB, {per_value:.2f} bytes per value"),
        ("meters", stats.meters),
        ("series", stats.series),
        ("readings", stats.readings),
        ("values", stats.values),
        ("not yet compacted", f"{stats.rows_waiting} readings"),
        ("day blocks", stats.blocks),
        ("raw telegrams", stats.raw_telegrams),
        ("system log", f"{stats.log_entries} entries, {stats.log_bytes / 2**20:.1f} MiB"),
        ("oldest reading", iso(stats.oldest) or "-"),
        ("newest reading", iso(stats.newest) or "-"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print()
    print(f"{'table':<{width}}  {'entries':>10}  {'bytes':>12}")
    for name, table in stats.tables.items():
        print(f"{name:<{width}}  {table.entries:>10}  {table.bytes:>12}")
    return 0


@reports_errors("store export")
def run_export(args: argparse.Namespace) -> int:
    with open_store(args, readonly=True) as store:
        if store.meter(args.meter) is None:
            raise NotFound(f"no meter {args.meter!r} in the store")
        rows = list(export_rows(store, args.meter, args.since, args.until))
    if args.csv:
        write_csv(rows, sys.stdout)
    else:
        write_table(rows, sys.stdout)
    return 0


def export_rows(store: Store, meter: str, since: int | None, until: int | None):
    """One tuple of ``EXPORT_COLUMNS`` per value, in time order (then series order)."""
    from mbusgw.gateway.store import ValueKind
    from mbusgw.gateway.store.model import NO_TIME

    series = {info.id: info for info in store.series(meter)}
    out = []
    for series_id, table in store.meter_values(meter, since, until).items():
        info = series[series_id]
        for i in range(len(table)):
            meter_time = int(table.meter_time[i])
            out.append(
                (
                    int(table.received_at[i]),
                    series_id,
                    (
                        meter,
                        series_id,
                        info.quantity,
                        info.unit,
                        info.description,
                        iso(int(table.received_at[i])),
                        "" if meter_time == NO_TIME else iso(meter_time),
                        _text(table.value(i)),
                        ValueKind(int(table.kind[i])).name.lower(),
                    ),
                )
            )
    out.sort(key=lambda row: row[:2])
    return (row for _, _, row in out)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[union-attr]
    return str(value)


def write_csv(rows, out: TextIO) -> None:
    writer = CsvWriter(out)
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(rows)


def write_table(rows, out: TextIO) -> None:
    shown = ("received_at", "quantity", "value", "unit", "meter_time")
    picks = [EXPORT_COLUMNS.index(name) for name in shown]
    lines = [shown, *[tuple(str(row[i]) for i in picks) for row in rows]]
    widths = [max(len(line[c]) for line in lines) for c in range(len(shown))]
    for line in lines:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        out.write("\n")


@reports_errors("store check")
def run_check(args: argparse.Namespace) -> int:
    with open_store(args, readonly=True) as store:
        problems = store.problems()
    for problem in problems:
        print(problem)
    print("store is consistent" if not problems else f"{len(problems)} problems found")
    return 0 if not problems else 1
