"""``mbusgw meters install|remove|list|template``: the meter list of a stopped gateway's
store. While a gateway runs on the data directory, install and remove are refused (it owns
the list); listing reads the store as it is."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from mbusgw.gateway import meters as installing
from mbusgw.gateway.commands._store_common import add_data_dir, open_store, reports_errors


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("meters", help="install and list meters")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="install a meter list (CSV, manual table 5)")
    install.add_argument("file", type=Path)
    install.add_argument("--interface", default="default", help="the line the meters are on")
    removing = actions.add_parser("remove", help="uninstall meters (by key)")
    removing.add_argument("keys", nargs="+", metavar="KEY")
    listing = actions.add_parser("list", help="the installed meters")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--passive", action="store_true", help="show passive meters too")
    actions.add_parser("template", help="print the meter-list template")
    for sub in (install, removing, listing):
        add_data_dir(sub)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "template":
        sys.stdout.write(installing.template_csv())
        return 0
    if args.action == "install":
        return install(args)
    if args.action == "remove":
        return remove(args)
    return list_meters(args)


@reports_errors("meters install")
def install(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"mbusgw: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        new = installing.parse_meter_list(text, interface=args.interface)
    except installing.MeterListError as exc:
        print("mbusgw: meter list rejected, nothing installed:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    keys = {m.key for m in new}
    meters = _change(args, "mbusgw meters install", lambda m, c: installing.install(m, new, c))
    if meters is None:
        return 1
    passive = sum(not m.active for m in meters)
    print(f"installed {len(new)} meter(s); {len(meters)} in the list, {passive} passive")
    warning = installing.capacity_warning(
        [m.key for m in meters if m.key in keys and m.enabled and not m.active]
    )
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


@reports_errors("meters remove")
def remove(args: argparse.Namespace) -> int:
    unknown: list[str] = []

    def change(meters: list[installing.Meter], capacity: int) -> list[installing.Meter]:
        unknown.extend(sorted(set(args.keys) - {m.key for m in meters}))
        if unknown:
            return meters
        kept = [m for m in meters if m.key not in set(args.keys)]
        return installing.apply_capacity(kept, capacity)

    meters = _change(args, "mbusgw meters remove", change)
    if meters is None:
        return 1
    if unknown:
        print(f"mbusgw: no such meter: {', '.join(unknown)}; nothing removed", file=sys.stderr)
        return 1
    print(f"removed {len(args.keys)} meter(s); {len(meters)} in the list")
    return 0


def _change(
    args: argparse.Namespace,
    what: str,
    change: Callable[[list[installing.Meter], int], list[installing.Meter]],
) -> list[installing.Meter] | None:
    """Change the meter list of a data directory no gateway runs on (a running gateway owns
    its list: a change behind its back would leave it working from a stale one). None, with
    the reason printed, when the directory is owned."""
    from mbusgw.gateway.installation import load_meters, replace_meters
    from mbusgw.gateway.owner import DataDirBusy, own

    try:
        with own(args.data_dir, what):
            store = open_store(args, readonly=False)
            try:
                current = load_meters(store)
                meters = change(current, store.settings.capacity)
                gone = sorted({m.key for m in current} - {m.key for m in meters})
                store.write(replace_meters(meters, gone))
            finally:
                store.close()
    except DataDirBusy as exc:
        print(
            f"mbusgw: refused, nothing changed: {exc}. The running gateway owns the meter "
            "list and would go on working from its own copy; change it through the gateway "
            "(its Installation page, or POST/DELETE /api/v1/meters), or stop it first.",
            file=sys.stderr,
        )
        return None
    return meters


@reports_errors("meters list")
def list_meters(args: argparse.Namespace) -> int:
    from mbusgw.gateway.installation import load_meters

    store = open_store(args, readonly=True)
    try:
        meters = [m for m in load_meters(store) if args.passive or m.active]
    finally:
        store.close()
    if args.json:
        print(json.dumps([installing.meter_to_record(m) for m in meters], indent=2))
        return 0
    print(f"{'key':<20} {'position':<32} {'line':<10} {'mode':<22} {'baud':>5} state")
    for m in meters:
        modes = "|".join(mode.value for mode in m.addressing)
        state = "active" if m.active else "passive"
        print(
            f"{m.key:<20} {m.position[:32]:<32} {m.interface:<10} {modes:<22} {m.baud:>5} {state}"
        )
    return 0
