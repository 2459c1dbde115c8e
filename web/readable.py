"""Values as a person reads them on a page: the quantity in words (``gateway.quantity_names``,
in the configured report language), the number in a scaled unit with sensible decimals
(29335930000 Wh -> "29.34 GWh"). The exact stored value stays one click away: the pages put
it beside the readable one (``templates/_value.html``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from mbusgw.gateway.quantity_names import quantity_label

# a unit family: the same unit with growing SI prefixes (steps of 1000)
_FAMILIES = (
    ("Wh", "kWh", "MWh", "GWh", "TWh"),
    ("J", "kJ", "MJ", "GJ", "TJ"),
    ("W", "kW", "MW", "GW"),
    ("J/h", "kJ/h", "MJ/h", "GJ/h"),
)
_PLACE: dict[str, tuple[tuple[str, ...], int]] = {
    unit: (family, index) for family in _FAMILIES for index, unit in enumerate(family)
}

# the main value of a meter (``meter_list.main_values``), by quantity: what it is there to count
MAIN_QUANTITIES = ("energy", "volume", "hca", "mass", "volume_flow", "power")


def number(value: float) -> str:
    """A number with decimals for reading: about four significant digits, at most three
    decimals, thousands not grouped (a copied number stays a number)."""
    size = abs(value)
    places = 0 if size >= 1000 else 1 if size >= 100 else 2 if size >= 10 else 3
    text = f"{value:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def scaled(value: float, unit: str) -> tuple[float, str]:
    """``value`` in the unit of its family that keeps it between 1 and 1000 where it can."""
    place = _PLACE.get(unit)
    if place is None or value == 0:
        return value, unit
    family, index = place
    while abs(value) >= 1000 and index + 1 < len(family):
        value, index = value / 1000, index + 1
    while abs(value) < 1 and index > 0:
        value, index = value * 1000, index - 1
    return value, family[index]


def as_number(value: Any) -> float | None:
    """A stored value as a float for showing, or None for one that is no number."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


# durations: the largest unit that keeps the number at least 1 ("102902400 s" -> "1191 d")
_DURATIONS = (("d", 86_400), ("h", 3600), ("min", 60), ("s", 1))
_SECONDS = {name: seconds for name, seconds in _DURATIONS}
_MEANT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?")


def duration(value: float, unit: str) -> tuple[float, str]:
    seconds = value * _SECONDS[unit]
    name, size = next(((n, s) for n, s in _DURATIONS if abs(seconds) >= s), ("s", 1))
    return (seconds / size, name) if _SECONDS[unit] <= size else (value, unit)


def reading_text(value: Any, unit: str) -> str:
    """The number in a scaled unit ("29.34 GWh"); other values (dates, text, hex) as they are."""
    amount = as_number(value)
    if amount is None:
        text = "" if value is None else str(value)
        # the meter's clock (no zone, so not a time of the gateway's): a date and a time
        return text.replace("T", " ") if _MEANT_TIME.fullmatch(text) else text
    amount, unit = duration(amount, unit) if unit in _SECONDS else scaled(amount, unit)
    return f"{number(amount)} {unit}".rstrip()


def exact_text(value: Any, unit: str) -> str:
    """The stored value as stored, with its unit."""
    text = "" if value is None else str(value)
    return f"{text} {unit}".rstrip()


def label(series: Any, language: str) -> str:
    """The readable name of a series (a catalog entry or its dict)."""
    get = series.get if isinstance(series, dict) else lambda name: getattr(series, name)
    return quantity_label(get("quantity"), get("description") or "", language)


def labelled(series: list[dict[str, Any]], language: str) -> list[dict[str, Any]]:
    """Each series dict with its ``label``; a label two series share gets "(2)", "(3)" ...
    (a meter may repeat a record), so a menu never shows the same words twice."""
    seen: dict[str, int] = {}
    for entry in series:
        text = label(entry, language)
        seen[text] = seen.get(text, 0) + 1
        entry["label"] = text if seen[text] == 1 else f"{text} ({seen[text]})"
    return series


JOB_TITLES = {
    "read_all": "Reading all meters",
    "scan_primary": "Search by primary address",
    "scan_secondary": "Search by secondary address",
    "scan_wireless": "Wireless search",
    "report_test": "Report test",
    "report_run": "Report sent now",
}


def job_title(kind: str) -> str:
    """A job's kind in words ("scan_secondary" -> "Search by secondary address")."""
    words = kind.replace("_", " ")
    return JOB_TITLES.get(kind, words[:1].upper() + words[1:])


_VALUE = Markup(
    '<details class="value"><summary>{}</summary>'
    '<span class="exact" title="stored value">{}</span></details>'
)


def value_html(value: Mapping[str, Any]) -> Markup:
    """A value dict (``value``, ``unit``) as the pages show it: readable, and one click (a
    ``<details>``, no script) to the exact stored value."""
    return _VALUE.format(
        reading_text(value["value"], value["unit"]), exact_text(value["value"], value["unit"])
    )
