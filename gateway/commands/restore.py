"""``mbusgw restore FILE``: check a backup completely, then replace the store with it."""

from __future__ import annotations

import argparse
from pathlib import Path

from mbusgw.gateway.commands._store_common import (
    add_data_dir,
    add_passphrase_file,
    open_store,
    owning,
    read_passphrase,
    reports_errors,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="replace the store with a backup",
        description="Check the backup FILE (header, size, checksum, a test open) and then replace "
        "the store with it in one atomic step. Stop the gateway first. A damaged backup changes "
        "nothing. A backup with secrets asks for their passphrase; a wrong one changes nothing.",
    )
    parser.add_argument("file", type=Path, help="a file written by `mbusgw backup`")
    parser.add_argument(
        "--check",
        action="store_true",
        help="also decode every record of the backup before restoring (slow on a large store)",
    )
    add_passphrase_file(parser, "of a backup with secrets")
    add_data_dir(parser)
    parser.set_defaults(func=run)


@reports_errors("restore")
def run(args: argparse.Namespace) -> int:
    from mbusgw.gateway.store import store_path
    from mbusgw.gateway.store.backup import read_backup_info, restore_backup

    with owning(args, "restore"):  # never a store swapped under a running gateway
        passphrase = None
        if read_backup_info(args.file).secrets is not None:
            passphrase = read_passphrase(args.passphrase_file, confirm=False)
        info = restore_backup(
            args.file, store_path(args.data_dir), full_check=args.check, passphrase=passphrase
        )
        with open_store(args, readonly=False) as store:
            store.log.warning("store", f"store restored from the backup of {info.created}")
            store.write(lambda ctx: None)
    print(
        f"restored {args.file} (taken {info.created}): {info.meters} meters, "
        f"{info.readings} readings, {info.values} values"
    )
    return 0
