"""The meter list page's rows: each meter's main value, its status in words with the reason,
and the filters (medium, status, interface, text) and sort order of the page's query. Plain
Python over the listing's dicts: 512 meters filter and sort in well under a millisecond."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
from markupsafe import Markup

from mbusgw.core.units import Flag, ValueKind, medium_name
from mbusgw.gateway.facade import GatewayHandle
from mbusgw.web.plain import iso, plain
from mbusgw.web.readable import MAIN_QUANTITIES, label, value_html
from mbusgw.web.times import shown_time
from mbusgw.web.values import latest_table

STATUS_WORDS = {"ok": "read", "failed": "failed", "never": "never read"}
SORTS = {  # the query's sort -> (heading, key of a row)
    "position": ("Position", lambda m: m["position"].casefold()),
    "key": ("Key", lambda m: m["key"]),
    "medium": ("Medium", lambda m: m["medium_name"]),
    "status": ("Status", lambda m: (m["health"]["status"] != "failed", m["health"]["status"])),
    "read": ("Last read", lambda m: m["read_at"] or ""),
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


def main_values(gw: GatewayHandle, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Each meter's main value (``readable.MAIN_QUANTITIES``; else its first number with a
    unit) and the time of its newest value, straight from the store's latest values: one
    value dict per meter, not one per stored series."""
    found = latest_table(gw, keys)
    if found is None:
        return {}
    table, names = found
    best: dict[str, tuple[int, int]] = {}  # meter -> (rank, index)
    newest: dict[str, int] = {}
    numeric = np.isin(table.kind, (ValueKind.DECIMAL, ValueKind.REAL)).tolist()
    for i, (series, at) in enumerate(zip(table.series.tolist(), table.received_at.tolist(),
                                         strict=True)):  # fmt: skip
        info = names.get(series)
        if info is None:
            continue
        newest[info.meter] = max(newest.get(info.meter, 0), at)
        if not numeric[i] or not info.unit:
            continue
        plain_value = not info.description and info.quantity in MAIN_QUANTITIES
        rank = MAIN_QUANTITIES.index(info.quantity) if plain_value else len(MAIN_QUANTITIES)
        if info.meter not in best or rank < best[info.meter][0]:
            best[info.meter] = (rank, i)
    out: dict[str, dict[str, Any]] = {
        m: {"read_at": iso(at), "main": None} for m, at in newest.items()
    }
    for meter, (_, i) in best.items():
        info = names[int(table.series[i])]
        out[meter]["main"] = {
            "quantity": info.quantity,
            "unit": info.unit,
            "description": info.description,
            "value": plain(table.value(i)),
            "invalid": bool(int(table.flags[i]) & Flag.INVALID),
        }
    return out


def rows_of(
    gw: GatewayHandle, listing: dict[str, Any], query: ListQuery
) -> tuple[list[dict[str, Any]], dict]:
    """The rows the page shows, and the choices of its filters (from all meters listed)."""
    rows = listing["meters"]
    mains = main_values(gw, [row["key"] for row in rows])
    for row in rows:
        row["medium_name"] = medium_name(row["medium"]) if row["medium"] is not None else ""
        found = mains.get(row["key"], {})
        row["main"], row["read_at"] = found.get("main"), found.get("read_at")
        row["status_text"] = status_text(row)
    choices = {
        "medium": sorted({r["medium_name"] for r in rows if r["medium_name"]}),
        "interface": sorted({r["interface"] for r in rows if r["interface"]}),
        "status": STATUS_WORDS,
    }
    shown = [r for r in rows if query.matches(r)]
    shown.sort(key=SORTS[query.sort][1], reverse=query.descending)
    return shown, choices


_ROW = Markup(
    '<tr class="{state}" data-key="{key}"><td><a href="{href}">{position}</a></td>'
    "<td><code>{key}</code></td><td>{medium}</td><td>{line}</td>"
    '<td><span class="badge {status}">{status}</span> <span class="reason">{reason}</span></td>'
    "<td>{read}</td><td>{main}</td></tr>\n"
)


def rows_html(rows: list[dict[str, Any]], meter_href: str, zone: str, language: str) -> Markup:
    """The table's rows. Rendered here rather than by the (asynchronous) template engine,
    which spends about 0.2 ms on each of up to 512 rows. ``meter_href``: a meter page's
    address with ``{key}`` where the key goes."""
    times: dict[str, str] = {}  # a cycle's meters share few distinct times
    out = []
    for m in rows:
        read = m["read_at"]
        if read and read not in times:
            times[read] = shown_time(read, zone)
        main = m["main"]
        shown = (
            Markup('<span class="quantity">{}</span> {}').format(
                label(main, language), value_html(main)
            )
            if main
            else ""
        )
        line = m["interface"] or "—"
        if m["wireless"]:
            line = f"wireless, heard by {m['interface']}" if m["interface"] else "wireless"
        out.append(_ROW.format(
            state=m["state"], key=m["key"], href=meter_href.format(key=quote(m["key"], safe="")),
            position=m["position"], medium=m["medium_name"] or "—", line=line,
            status=m["health"]["status"], reason=m["status_text"],
            read=times.get(read, ""), main=shown,
        ))  # fmt: skip
    return Markup("").join(out)
