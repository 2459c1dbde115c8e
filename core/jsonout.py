"""JSON text for decoded telegrams, with exact decimals.

``json.dumps`` cannot write a ``Decimal`` as a number without going through float; meter values
must come out exactly as the meter sent them (``12.345``, never ``12.345000000000001``). This
writer handles the types ``Telegram.to_dict()`` produces.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal

_string = json.JSONEncoder(ensure_ascii=False).encode


def dumps(value: object) -> str:
    """Compact JSON for dicts, lists, str, int, float, Decimal, bool and None."""
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
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
