"""What the store's commands share: the data directory option, opening, times, errors.

The store's modules (LMDB, numpy) are imported by the commands' work, never while the command
line is parsed, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import getpass
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from mbusgw.gateway.errors import DISK_FULL_STATUS, BackupError, DiskFull, GatewayError
from mbusgw.gateway.owner import DataDirBusy, own
from mbusgw.gateway.settings import ConfigError

if TYPE_CHECKING:
    from mbusgw.gateway.store import Store

DATA_DIR_ENV = "MBUSGW_DATA_DIR"


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get(DATA_DIR_ENV, "var")),
        help=f"the gateway's data directory (default: ${DATA_DIR_ENV} or ./var)",
    )


def add_passphrase_file(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help=f"read the passphrase {purpose} from the first line of FILE (default: ask)",
    )


def read_passphrase(path: Path | None, *, confirm: bool) -> str:
    """A backup's passphrase: the first line of ``path``, or asked on the terminal (twice when
    ``confirm``: a mistyped one would lock the secrets away)."""
    if path is not None:
        lines = path.read_text(encoding="utf-8").splitlines()
        passphrase = lines[0] if lines else ""
    else:
        passphrase = getpass.getpass("passphrase for the backup's secrets: ")
        if confirm and getpass.getpass("the same again: ") != passphrase:
            raise BackupError("the two passphrases differ")
    if len(passphrase) < 8:
        raise BackupError("the passphrase must have at least 8 characters")
    return passphrase


def owning(args: argparse.Namespace, command: str) -> AbstractContextManager[None]:
    """Hold the data directory while ``command`` changes it: a running gateway (or another
    command) there makes it DataDirBusy, which ``reports_errors`` turns into a refusal."""
    return own(args.data_dir, f"mbusgw {command}")


def open_store(args: argparse.Namespace, *, readonly: bool) -> Store:
    from mbusgw.gateway.store import Store, store_path

    return Store.open(store_path(args.data_dir), readonly=readonly)


def reports_errors(command: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable]:
    """Turn the gateway's own errors into one line on stderr and exit status 1."""

    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(run)
        def checked(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except DataDirBusy as busy:
                print(
                    f"mbusgw {command}: refused, nothing changed: {busy}; it owns the data "
                    "directory (stop it first, or make the change through it)",
                    file=sys.stderr,
                )
                return 1
            except (GatewayError, ConfigError, OSError) as error:
                print(f"mbusgw {command}: error: {error}", file=sys.stderr)
                return DISK_FULL_STATUS if isinstance(error, DiskFull) else 1

        return checked

    return wrap


def parse_time(text: str, *, end_of_day: bool = False) -> int:
    """An ISO 8601 date or date-time as seconds since the epoch (UTC unless an offset is given).

    A bare date as the end of a range means the end of that day, so ``--to 2024-01-31`` includes
    the 31st.
    """
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime.combine(day, dt.time(), dt.UTC)
            return int(moment.timestamp()) + (86_400 if end_of_day else 0)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def iso(seconds: int | float | None) -> str:
    if seconds is None:
        return ""
    return (
        dt.datetime.fromtimestamp(seconds, dt.UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )
