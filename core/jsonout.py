"""JSON text for decoded telegrams, with exact decimals.

``json.dumps`` cannot write a ``Decimal`` as a number without going through float; meter values
must come out exactly as the meter sent them (``12.345``, never ``12.345000000000001``). This
writer handles the types ``Telegram.to_dict()`` produces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from json.encoder import encode_basestring  # type: ignore[attr-defined]

_string = encode_basestring  # the C quoting json.dumps(ensure_ascii=False) uses


def dumps(value: object) -> str:
    """Compact JSON for dicts, lists, str, int, float, Decimal, bool and None."""
    out: list[str] = []
    _write(value, out.append)
    return "".join(out)


def _write(value: object, put: Callable[[str], object]) -> None:
    # the exact types first, without isinstance chains: a 512-meter list is ~50 000 values
    kind = type(value)
    if kind is str:
        put(_string(value))
    elif kind is dict:
        put("{")
        first = True
        for key, item in value.items():  # type: ignore[attr-defined]
            if not first:
                put(",")
            first = False
            put(_string(key if type(key) is str else str(key)))
            put(":")
            _write(item, put)
        put("}")
    elif kind is list or kind is tuple:
        put("[")
        first = True
        for item in value:  # type: ignore[attr-defined]
            if not first:
                put(",")
            first = False
            _write(item, put)
        put("]")
    elif kind is int:
        put(str(value))
    else:
        put(_scalar(value))


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} has no JSON form")
        return format(value, "f")
    if isinstance(value, float):
        if not math.isfinite(value):
            return "null"  # a real32 NaN or infinity from a meter
        return repr(value)
    if isinstance(value, dict | list | tuple):  # subclasses: as their base
        return dumps(dict(value) if isinstance(value, dict) else list(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
