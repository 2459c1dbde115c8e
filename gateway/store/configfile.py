"""Configuration files: every setting that is not device-specific, as TOML (SPEC §6).

Export writes the effective value of every registered, non-device-specific setting, grouped
into tables by the dots of their names. Import parses the whole file, checks the header, every
name and every value, and only then applies all settings in one transaction: a bad file
changes nothing and the error names the line or the setting.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from mbusgw.gateway.errors import ConfigError
from mbusgw.gateway.store.options import SETTINGS, validate_settings
from mbusgw.gateway.store.toml_writer import dumps

FILE_KIND = "configuration"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 4 * 1024 * 1024


def portable_settings(settings: Mapping[str, object]) -> dict[str, object]:
    """The registered settings that may go to another gateway, with their current values."""
    return {
        name: settings.get(name, spec.default)
        for name, spec in sorted(SETTINGS.items())
        if not spec.device_specific
    }


def render_config(settings: Mapping[str, object], exported: float) -> str:
    """The configuration file text for the given effective settings."""
    tree: dict[str, object] = {}
    for name, value in portable_settings(settings).items():
        *parents, leaf = name.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[leaf] = value  # type: ignore[index]
    when = dt.datetime.fromtimestamp(exported, dt.UTC).isoformat(timespec="seconds")
    head = (
        "# mbusgw configuration file: the settings that are not specific to one device.\n"
        "# Import it with `mbusgw config import FILE`; every value is checked before any is used.\n"
    )
    return head + dumps(
        {
            "mbusgw": {"file": FILE_KIND, "version": FORMAT_VERSION, "exported": when},
            "settings": tree,
        }
    )


def export_config(
    settings: Mapping[str, object], path: str | os.PathLike[str], exported: float
) -> int:
    """Write the configuration file atomically; returns how many settings it holds."""
    path = Path(path)
    text = render_config(settings, exported)
    partial = path.with_name(path.name + ".part")
    with open(partial, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    return len(portable_settings(settings))


def parse_config(text: str) -> dict[str, object]:
    """Checked settings from a configuration file's text, or ``ConfigError``."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}") from None
    header = document.get("mbusgw")
    if not isinstance(header, dict) or header.get("file") != FILE_KIND:
        raise ConfigError('not an mbusgw configuration file (no [mbusgw] file = "configuration")')
    if header.get("version") != FORMAT_VERSION:
        raise ConfigError(
            f"configuration file version {header.get('version')!r}; expected {FORMAT_VERSION}"
        )
    unknown_tables = set(document) - {"mbusgw", "settings"}
    if unknown_tables:
        raise ConfigError(f"unknown table [{sorted(unknown_tables)[0]}]")
    tree = document.get("settings", {})
    if not isinstance(tree, dict):
        raise ConfigError("[settings] must be a table")
    flat: dict[str, object] = {}
    _flatten(tree, "", flat)
    for name in flat:
        if SETTINGS[name].device_specific:
            raise ConfigError("device-specific: not taken from a configuration file", name)
    return validate_settings(flat)


def _flatten(node: dict[str, object], prefix: str, out: dict[str, object]) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if name in SETTINGS:
            out[name] = value
        elif isinstance(value, dict):
            _flatten(value, name + ".", out)
        else:
            raise ConfigError("unknown setting", name)


def read_config(path: str | os.PathLike[str]) -> dict[str, object]:
    """Checked settings from a configuration file (``ConfigError`` for any problem)."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte {error.start})") from None
    return parse_config(text)
