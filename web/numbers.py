"""JSON text of stored values, exact and fast: the hot paths of the API (a year of one series,
the latest values of every meter) write numbers straight from the store's columns.

A decimal value is its mantissa and exponent; its text is the exact decimal (``12.345``, never
``12.345000000000001``), the same text ``core.jsonout`` writes for a ``Decimal``. Other kinds
(reals, dates, text) go through the exact per-value path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mbusgw.core.jsonout import dumps
from mbusgw.core.units import ValueKind

DECIMAL = int(ValueKind.DECIMAL)


def _decimal_texts(mantissas: list[int], exponent: int) -> list[str]:
    """Exact decimal text of ``m × 10**exponent`` for each mantissa."""
    if exponent == 0:
        return [str(m) for m in mantissas]
    if exponent > 0:
        scale = 10**exponent
        return [str(m * scale) for m in mantissas]
    digits = -exponent
    unit = 10**digits
    return [
        f"{m // unit}.{m % unit:0{digits}d}" if m >= 0 else f"-{-m // unit}.{-m % unit:0{digits}d}"
        for m in mantissas
    ]


def value_texts(table: Any, plain: Any) -> list[str]:
    """The JSON text of every value of a ``ValueTable``; ``plain`` turns a decoded value into
    JSON data (dates into ISO text …) for the kinds that are not decimal."""
    n = len(table)
    kinds = table.kind
    out: list[str] = [""] * n
    decimal = kinds == DECIMAL
    if n and decimal.all():
        exponents = table.exponent
        first = int(exponents[0])
        if (exponents == first).all():
            return _decimal_texts(table.mantissa.tolist(), first)
    rows = np.flatnonzero(decimal)
    if len(rows):
        mantissas = table.mantissa[rows]
        exponents = table.exponent[rows]
        # a set, not np.unique: that imports numpy.ma (about 0.7 MB) on its first call
        for exponent in set(exponents.tolist()):
            pick = exponents == exponent
            texts = _decimal_texts(mantissas[pick].tolist(), exponent)
            for row, text in zip(rows[pick].tolist(), texts, strict=True):
                out[row] = text
    for row in np.flatnonzero(~decimal).tolist():
        out[row] = dumps(plain(table.value(row)))
    return out


def join(texts: list[str]) -> str:
    return "[" + ",".join(texts) + "]"
