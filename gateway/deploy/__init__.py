"""The files that run the gateway as a system service: a systemd unit and a start-up file.

``python -m mbusgw.gateway.deploy unit`` prints the unit with this installation's ``mbusgw``
in ``ExecStart`` (so a virtualenv anywhere works); ``… config`` prints the start-up file to
begin with. docs/install.md shows where they go.
"""

from __future__ import annotations

import sysconfig
from importlib.resources import files
from pathlib import Path

UNIT_NAME = "mbusgw.service"
CONFIG_NAME = "mbusgw.toml"
_PLACEHOLDER = "@MBUSGW@"


def installed_command() -> Path:
    """The ``mbusgw`` script of the environment this package is installed in."""
    return Path(sysconfig.get_path("scripts")) / "mbusgw"


def unit_text(command: Path | None = None) -> str:
    """The systemd unit, running ``command`` (default: this installation's ``mbusgw``)."""
    command = command or installed_command()
    if not command.is_absolute() or any(c.isspace() or c in "\"'\\$%" for c in str(command)):
        # systemd would split or expand it: refuse rather than write a unit that cannot start
        raise ValueError(f"{command}: the unit needs an absolute path without spaces or quotes")
    template = files(__package__).joinpath(UNIT_NAME).read_text(encoding="utf-8")
    return template.replace(_PLACEHOLDER, str(command))


def config_text() -> str:
    """The start-up file to begin with (``/etc/mbusgw/mbusgw.toml``)."""
    return files(__package__).joinpath(CONFIG_NAME).read_text(encoding="utf-8")
