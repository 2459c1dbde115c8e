"""The meter list page's rows: each meter's main value, its status in words with the reason,
and the filters (medium, status, interface, text) and sort order of the page's query. Plain
Python over the listing's dicts: 512 meters filter and sort in well under a millisecond."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mbusgw.core.units import medium_name
from mbusgw.web.readable import main_value

STATUS_WORDS = {"ok": "read", "failed": "failed", "never": "never read"}
SORTS = {  # the query's sort -> (heading, key of a row)
    "position": ("Position", lambda m: m["position"].casefold()),
    "key": ("Key", lambda m: m["key"]),
    "medium": ("Medium", lambda m: m["medium_name"]),
    "status": ("Status", lambda m: (m["health"]["status"] != "failed", m["health"]["status"])),
    "read": ("Last read", lambda m: (m["latest"] or {}).get("read_at") or ""),
}


@dataclass(frozen=True)
class ListQuery:
    """What the page's query asks for (anything unknown means no filter)."""

    text: str = ""
    medium: str = ""
    status: str = ""
    interface: str = ""
    sort: str = "position"
    descending: bool = False

    @classmethod
    def of(cls, args: Mapping[str, str]) -> ListQuery:
        sort = args.get("sort", "position")
        return cls(
            args.get("q", "").strip()[:128],
            args.get("medium", ""),
            args.get("status", "") if args.get("status", "") in STATUS_WORDS else "",
            args.get("interface", ""),
            sort if sort in SORTS else "position",
            args.get("order") == "desc",
        )

    def matches(self, row: dict[str, Any]) -> bool:
        if self.medium and row["medium_name"] != self.medium:
            return False
        if self.status and row["health"]["status"] != self.status:
            return False
        if self.interface and (row["interface"] or "") != self.interface:
            return False
        if self.text:
            words = (row["position"], row["key"], row["secondary_address"] or "",
                     row["manufacturer"] or "", row["medium_name"])  # fmt: skip
            return self.text.casefold() in " ".join(words).casefold()
        return True


def status_text(row: dict[str, Any]) -> str:
    """What the status badge leaves out: why a meter failed, that it is not read; nothing
    for a meter whose last reading was good."""
    health = row["health"]
    if row["state"] == "passive":
        return "passive: not read"
    if health["status"] == "failed":
        return health.get("last_error") or "no reason recorded"
    return "not read yet" if health["status"] == "never" else ""


def rows_of(listing: dict[str, Any], query: ListQuery) -> tuple[list[dict[str, Any]], dict]:
    """The rows the page shows, and the choices of its filters (from all meters listed)."""
    rows = listing["meters"]
    for row in rows:
        row["medium_name"] = medium_name(row["medium"]) if row["medium"] is not None else ""
        row["main"] = main_value(row["latest"]["values"]) if row["latest"] else None
        row["status_text"] = status_text(row)
    choices = {
        "medium": sorted({r["medium_name"] for r in rows if r["medium_name"]}),
        "interface": sorted({r["interface"] for r in rows if r["interface"]}),
        "status": STATUS_WORDS,
    }
    shown = [r for r in rows if query.matches(r)]
    shown.sort(key=SORTS[query.sort][1], reverse=query.descending)
    return shown, choices
