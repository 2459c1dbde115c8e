"""The ``mbusgw`` command. Each command lives in its own module with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that add a command: each defines register(subparsers) and sets a ``func`` default.
COMMAND_MODULES: list[str] = [
    "mbusgw.gateway.commands.run",
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
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
