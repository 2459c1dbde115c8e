"""Configuration files: every setting that is not device-specific, as TOML (SPEC §6).

Export writes the effective ``Settings`` without the fields marked device-specific, and by
default without passwords: a set one is written as ``SECRET_MASK``, which on import means "keep
the password stored here" (a file to clone gateways can include them). Import parses the whole
file and checks the header, every name and every value (``Settings.updated``) before anything is
applied; applying is one transaction (``update_settings``). Every problem is a ``ConfigError``
naming the setting (dotted path) or the file, and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from pathlib import Path
from typing import Any

from mbusgw.gateway.settings import SECRET_MASK, ConfigError, Settings, without_masks
from mbusgw.gateway.store.sealing import write_private
from mbusgw.gateway.store.settings_table import device_specific_paths, portable
from mbusgw.gateway.store.toml_writer import dumps

FILE_KIND = "configuration"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 4 * 1024 * 1024


def render_config(settings: Settings, exported: float, *, secrets: bool = False) -> str:
    """The text of a configuration file for ``settings``; passwords only with ``secrets``."""
    when = dt.datetime.fromtimestamp(exported, dt.UTC).isoformat(timespec="seconds")
    head = (
        "# mbusgw configuration file: the settings that are not specific to one device.\n"
        "# Import it with `mbusgw config import FILE`; every value is checked before any is used.\n"
    )
    if secrets:
        head += "# It holds passwords: keep it safe.\n"
    else:
        head += f'# Passwords are left out: "{SECRET_MASK}" keeps the one the gateway has.\n'
    document = {
        "mbusgw": {"file": FILE_KIND, "version": FORMAT_VERSION, "exported": when},
        "settings": portable(settings, secrets=secrets),
    }
    return head + dumps(document)


def export_config(
    settings: Settings, path: str | os.PathLike[str], exported: float, *, secrets: bool = False
) -> None:
    """Write the configuration file atomically (a partial file never takes its place), readable
    by its owner alone (with ``secrets`` it holds passwords)."""
    write_private(Path(path), render_config(settings, exported, secrets=secrets).encode())


def parse_config(text: str, source: str = "configuration file") -> dict[str, Any]:
    """The settings of a configuration file, checked against ``Settings`` (nested dict)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError({source: f"not valid TOML: {error}"}) from None
    header = document.get("mbusgw")
    if not isinstance(header, dict) or header.get("file") != FILE_KIND:
        raise ConfigError(
            {source: 'not an mbusgw configuration file (no [mbusgw] file = "configuration")'}
        )
    if header.get("version") != FORMAT_VERSION:
        raise ConfigError(
            {"mbusgw.version": f"{header.get('version')!r}; this gateway reads {FORMAT_VERSION}"}
        )
    errors = {name: "unknown table" for name in set(document) - {"mbusgw", "settings"}}
    tree = document.get("settings", {})
    if not isinstance(tree, dict):
        errors["settings"] = "must be a table of settings"
        tree = {}
    for path in device_specific_paths(tree):
        errors[path] = "device-specific: not taken from a configuration file"
    if errors:
        raise ConfigError(errors)
    Settings().updated(tree)  # every name and value, all errors at once
    return without_masks(tree)  # a password left out keeps the stored one


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked settings of a configuration file (``ConfigError`` for any problem)."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError({str(path): f"cannot read: {error.strerror}"}) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError({str(path): f"larger than {MAX_FILE_BYTES} bytes"})
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError({str(path): f"not UTF-8 text (byte {error.start})"}) from None
    return parse_config(text, str(path))
