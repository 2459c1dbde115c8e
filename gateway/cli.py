"""The ``mbusgw`` command. Each command lives in its own module with ``register(subparsers)``.

Registering a command imports nothing heavy (no trio, LMDB, numpy, web or Modbus stack): each
command imports what it needs when it runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mbusgw.gateway.errors import DISK_FULL_STATUS, DiskFull

# Modules that add a command: each defines register(subparsers) and sets a ``func`` default.
COMMAND_MODULES: list[str] = [
    "mbusgw.gateway.commands.run",
    "mbusgw.gateway.commands.meters",
    "mbusgw.gateway.commands.search",
    "mbusgw.gateway.commands.decode",
    "mbusgw.gateway.commands.listen",
    "mbusgw.gateway.commands.backup",
    "mbusgw.gateway.commands.restore",
    "mbusgw.gateway.commands.config",
    "mbusgw.gateway.commands.store",
    "mbusgw.gateway.commands.simulate",
    "mbusgw.gateway.commands.scan",
    "mbusgw.gateway.commands.read",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbusgw", description="Software M-Bus metering gateway")
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


class _Version(argparse.Action):
    """``--version``: the package's version and how its core was compiled (imported only when
    asked, so that building the parser stays cheap)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_text())
        parser.exit()


def version_text() -> str:
    """``mbusgw 0.1.0 (core: release build; Python 3.11.7)``."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from mbusgw.core import build

    try:
        number = version("mbusgw")
    except PackageNotFoundError:  # run from a checkout that was never installed
        number = "(not installed)"
    return f"mbusgw {number} (core: {build.describe()}; Python {platform.python_version()})"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return _interrupted()
    except DiskFull as error:
        return _disk_full(error)
    except BaseExceptionGroup as group:
        # Ctrl-C or a full disk inside a trio nursery arrive grouped with what they cancelled
        if group.subgroup(KeyboardInterrupt) is not None:
            return _interrupted()
        full = group.subgroup(DiskFull)
        if full is None:
            raise
        while isinstance(full, BaseExceptionGroup):
            full = full.exceptions[0]
        return _disk_full(full)
    except BrokenPipeError:
        sys.stderr.close()
        return 0


def _disk_full(error: BaseException) -> int:
    log = logging.getLogger("mbusgw")
    if log.hasHandlers():  # a service (mbusgw run): its log is standard error, the system journal
        log.error("%s", error)
    else:
        print(f"mbusgw: {error}", file=sys.stderr)
    return DISK_FULL_STATUS


def _interrupted() -> int:
    print("mbusgw: interrupted", file=sys.stderr)
    return 130  # 128 + SIGINT, as a shell reports it


if __name__ == "__main__":
    sys.exit(main())
