"""How a settings field is declared: its bounds, choices, check or secrecy (``dataclasses``
metadata the validation in ``gateway.settings`` reads), and the error a refused change raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """Settings were refused; ``errors`` maps each dotted path to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors.items()))


def _bounded(default: Any, low: float | None = None, high: float | None = None, **extra: Any):
    return field(default=default, metadata={"min": low, "max": high, **extra})


def _choice(default: str, *choices: str):
    return field(default=default, metadata={"choices": choices})


def _checked(default: Any, check: Callable[[Any], str | None], **extra: Any):
    """A field whose value ``check`` judges (None: good, else what is wrong)."""
    return field(default=default, metadata={"check": check, **extra})


def _parses(parse: Callable[[str], Any]) -> Callable[[Any], str | None]:
    """A check that a text setting parses with ``parse`` (its ValueError is the message)."""

    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be text"
        try:
            parse(value)
        except ValueError as exc:
            return str(exc)
        return None

    return check


def _secret():
    """A password: never logged, and an API shows only whether it is set."""
    return field(default="", metadata={"max_length": 256, "secret": True})
