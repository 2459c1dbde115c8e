"""``mbusgw backup FILE``: a consistent, compacted copy of the store, also while it runs;
the secrets only with ``--with-secrets``, then sealed with a passphrase."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mbusgw.gateway.commands._store_common import (
    add_data_dir,
    add_passphrase_file,
    open_store,
    read_passphrase,
    reports_errors,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backup",
        help="write a backup of all values, logs and settings",
        description="Write a backup of the whole store (values, logs, all settings) to FILE. "
        "Safe while the gateway runs; restore it with `mbusgw restore FILE`. Secrets (meter keys, "
        "report passwords) are left out unless --with-secrets is given.",
    )
    parser.add_argument("file", type=Path, help="the backup file to write (replaced if it exists)")
    parser.add_argument(
        "--with-secrets",
        action="store_true",
        help="include the secrets, sealed with a passphrase that a restore asks for",
    )
    add_passphrase_file(parser, "that seals the secrets (with --with-secrets)")
    add_data_dir(parser)
    parser.set_defaults(func=run)


@reports_errors("backup")
def run(args: argparse.Namespace) -> int:
    from mbusgw.gateway.store.backup import create_backup

    passphrase = read_passphrase(args.passphrase_file, confirm=True) if args.with_secrets else None
    with open_store(args, readonly=True) as store:
        info = create_backup(store.env, args.file, time.time(), passphrase=passphrase)
    print(
        f"backup written to {args.file}: {info.meters} meters, {info.series} series, "
        f"{info.readings} readings, {info.values} values, {info.data_bytes / 2**20:.1f} MiB, "
        + ("secrets sealed with the passphrase" if passphrase else "no secrets")
    )
    return 0
