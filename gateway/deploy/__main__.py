"""``python -m mbusgw.gateway.deploy unit|config``: print the systemd unit or the start-up file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbusgw.gateway.deploy import config_text, unit_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mbusgw.gateway.deploy",
        description="Print the systemd unit or the start-up file (docs/install.md).",
    )
    parser.add_argument("what", choices=("unit", "config"))
    parser.add_argument(
        "--command", type=Path, help="the mbusgw to run (default: this installation's)"
    )
    args = parser.parse_args(argv)
    try:
        text = unit_text(args.command) if args.what == "unit" else config_text()
    except ValueError as error:
        parser.error(str(error))
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
