"""The keys a settings change names, for the system log: dotted paths only, never a value
(a change may carry passwords)."""

from __future__ import annotations

from typing import Any

MAX_KEYS = 20  # a whole configuration file imported names its sections, not every key


def setting_keys(changes: Any, prefix: str = "") -> list[str]:
    """The dotted paths of the leaves of a nested change (``{"reading": {"schedule": ...}}``
    -> ``["reading.schedule"]``), at most ``MAX_KEYS`` of them (then "…" closes the list)."""
    keys: list[str] = []
    for name, value in changes.items() if isinstance(changes, dict) else ():
        path = f"{prefix}{name}"
        keys += setting_keys(value, path + ".") if isinstance(value, dict) and value else [path]
    return keys if len(keys) <= MAX_KEYS else [*keys[:MAX_KEYS], "…"]


def changed_keys(changes: Any, before: Any, after: Any) -> list[str]:
    """``setting_keys`` of a change whose values differ between the settings ``before`` and
    ``after`` (a form sends a whole section; the log names what it changed)."""
    return [key for key in setting_keys(changes) if key == "…" or _differs(before, after, key)]


def _differs(before: Any, after: Any, key: str) -> bool:
    for name in key.split("."):
        if isinstance(before, dict) or isinstance(after, dict):
            before = before.get(name) if isinstance(before, dict) else None
            after = after.get(name) if isinstance(after, dict) else None
        else:
            before, after = getattr(before, name, None), getattr(after, name, None)
    return before != after
