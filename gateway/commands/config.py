"""``mbusgw config export|import FILE``: settings that are not device-specific, as TOML."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mbusgw.gateway.commands._store_common import (
    add_data_dir,
    open_store,
    owning,
    reports_errors,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="export or import a configuration file",
        description="A configuration file holds every setting that is not specific to one device "
        "(not the network address, not the store size), to restore it or to clone gateways.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write the configuration file")
    export.add_argument("file", type=Path)
    export.add_argument(
        "--with-passwords",
        action="store_true",
        help="include passwords (to clone a gateway); without, an import keeps the stored ones",
    )
    add_data_dir(export)
    export.set_defaults(func=run_export)
    load = actions.add_parser(
        "import", help="check a configuration file completely, then apply all of it"
    )
    load.add_argument("file", type=Path)
    add_data_dir(load)
    load.set_defaults(func=run_import)


@reports_errors("config export")
def run_export(args: argparse.Namespace) -> int:
    from mbusgw.gateway.store.configfile import export_config

    with open_store(args, readonly=True) as store:
        export_config(store.stored_settings(), args.file, time.time(), secrets=args.with_passwords)
    print(f"settings written to {args.file}")
    return 0


@reports_errors("config import")
def run_import(args: argparse.Namespace) -> int:
    from mbusgw.gateway.store.configfile import read_config

    with owning(args, "config import"):  # a running gateway would keep its own settings
        changes = read_config(args.file)  # every name and value checked before the store opens
        with open_store(args, readonly=False) as store:
            store.log.info("store", f"configuration imported from {args.file.name}")
            store.update_settings(changes)  # one transaction: all settings and the log entry
    print(f"settings imported from {args.file}")
    return 0
