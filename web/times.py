"""Times as a person reads them: in the gateway's configured time zone, in one format,
``2026-12-07 00:03:03 CET`` (the zone's abbreviation says which offset applied, so the hour
after a daylight-saving change is never ambiguous). Every page shows its times through
``shown_time`` (the template filter ``when``); the API keeps ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

FORMAT = "%Y-%m-%d %H:%M:%S %Z"


@lru_cache(maxsize=8)
def local_zone(name: str) -> tzinfo:
    """The configured zone (``Settings.timezone``) by name."""
    return ZoneInfo(name)


def shown_time(value: str | datetime | float | None, zone: str) -> str:
    """A time (ISO 8601 text, a datetime, or seconds since the epoch; without an offset it is
    UTC, as the gateway keeps its times) in ``zone``. Text that is no time is shown as it is."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    elif isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromtimestamp(float(value), UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(local_zone(zone)).strftime(FORMAT)
