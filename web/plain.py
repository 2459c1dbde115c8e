"""Plain data from the gateway's objects, for the API and the pages: times as ISO text, decoded
values as JSON data, a meter looked up by key (``NotFound`` otherwise)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mbusgw.core.units import Flag
from mbusgw.gateway.facade import GatewayHandle, value_flags
from mbusgw.gateway.meters import Meter
from mbusgw.web.errors import NotFound

MAX_SERIES_PAGE = 100_000
DEFAULT_SERIES_PAGE = 50_000


def iso(seconds: float | int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(float(seconds), UTC).isoformat(timespec="seconds")


def plain(value: Any) -> Any:
    """A decoded value as JSON data: exact numbers stay exact, dates become ISO text."""
    if value is None or isinstance(value, bool | int | float | str | Decimal):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def find_meter(gw: GatewayHandle, key: str) -> Meter:
    for meter in gw.meters:
        if meter.key == key:
            return meter
    raise NotFound(f"no meter {key!r} is installed")


def record_values(telegrams: Any) -> list[dict[str, Any]]:
    """The records of decoded telegrams (not stored: no series id) as values, flagged invalid
    as the store flags them (``value_flags``)."""
    out = []
    for telegram in telegrams:
        flags = value_flags(telegram.array).tolist()
        # each record alone: the snapshot's telegrams keep no list of them all
        for record, flag in zip(map(telegram.record, range(len(flags))), flags, strict=True):
            value = {
                "series": 0,
                "quantity": str(record.quantity),
                "unit": str(record.unit),
                "description": str(record.function),
                "value": plain(record.value),
            }
            if flag & Flag.INVALID:
                value["invalid"] = True
            out.append(value)
    return out
