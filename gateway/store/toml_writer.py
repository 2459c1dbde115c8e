"""A small TOML writer for the value types settings use (``tomllib`` reads the result).

Tables (dicts) become ``[a.b]`` sections; scalars are strings, integers, floats (also inf and
nan), booleans, and arrays of those. Keys that are not bare words are quoted.
"""

from __future__ import annotations

import math
import re

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps(document: dict[str, object]) -> str:
    lines: list[str] = []
    _table(document, [], lines)
    return "\n".join(lines).strip("\n") + "\n"


def _table(table: dict[str, object], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines += ["", "[" + ".".join(_key(p) for p in path) + "]"]
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables.items():
        _table(value, [*path, key], lines)  # type: ignore[arg-type]


def _key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are text, not {type(key).__name__}")
    return key if _BARE_KEY.fullmatch(key) else _string(key)


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f]')


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters (also DEL) escaped."""
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _ESCAPES.get(m[0], f"\\u{ord(m[0]):04x}"), text) + '"'


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as TOML")
