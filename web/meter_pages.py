"""The pages of one meter (values, graph and its files, health, the last telegram, its
settings) and the wireless overview; routes of the pages blueprint."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quart import Response, request

from mbusgw.gateway.facade import CsvWriter
from mbusgw.web import graph, readable
from mbusgw.web import operations as ops
from mbusgw.web import values as vals
from mbusgw.web.auth import admin_only
from mbusgw.web.errors import NotFound
from mbusgw.web.pages import attempt, back, blueprint, detail_text, page
from mbusgw.web.params import arg_int
from mbusgw.web.plain import MAX_SERIES_PAGE, plain
from mbusgw.web.routes import gw
from mbusgw.web.times import local_zone


@blueprint.get("/wireless")
async def wireless() -> str:
    return await page("wireless.html", status=ops.wireless_status(gw()))


RANGES = (("1d", "24 hours", 1), ("7d", "7 days", 7), ("30d", "30 days", 30),
          ("365d", "1 year", 365))  # fmt: skip


@blueprint.get("/meters/<key>")
async def meter(key: str) -> str:
    gateway = gw()
    data = ops.get_meter(gateway, key)
    shown = _shown_graph(key)
    log = ops.meter_log(gateway, key, since=shown.since, newest=50)["entries"]
    recent = log[:48][::-1]  # the meter log is newest first; the sparkline oldest first
    health_line = graph.sparkline([e["duration_ms"] for e in recent],
                                  [e["status"] == "ok" for e in recent])  # fmt: skip
    rows: list[tuple[int, Any]] = []
    if shown.table is not None:
        table = shown.table
        rows = [(int(table.received_at[i]), plain(table.value(i)))
                for i in range(len(table) - 1, max(len(table) - 51, -1), -1)]  # fmt: skip
    return await page(
        "meter.html",
        meter=data,
        series=shown.series,
        chosen=shown.chosen,
        shown=shown.info,
        ranges=RANGES,
        span=shown.span,
        view=shown.view,
        compare=shown.compare,
        views=graph.VIEWS if shown.counter else graph.VIEWS[:1],
        graph=shown.graph,
        rows=rows,
        log=log,
        health_line=health_line,
        telegram=_last_telegram(key, data),
        addressing=[ADDRESSING_WORDS.get(mode, mode) for mode in data["addressing"]],
        png_name=_file_name(key, shown, "png"),
    )


ADDRESSING_WORDS = {
    "primary": "primary address",
    "secondary": "secondary address",
    "esecondary": "secondary address with fabrication number",
}


def _last_telegram(key: str, data: dict[str, Any]) -> list[str]:
    """The frames of the meter's newest stored reading, in hex (kept while raw telegrams
    are retained)."""
    latest = data.get("latest")
    if not latest or not latest.get("read_at") or not _stored(key):
        return []
    at = datetime.fromisoformat(latest["read_at"]).timestamp()
    raw = gw().store.raw_telegrams(key, at, at + 1)
    return [" ".join(f"{b:02X}" for b in frame) for frame in raw[-1].frames] if raw else []


@dataclass
class ShownGraph:
    """The series, range and view a meter page's query asks for, and their graph."""

    series: list[dict[str, Any]]
    chosen: int | None
    info: dict[str, Any] | None
    span: str
    view: str
    since: int
    until: int
    counter: bool = False
    compare: bool = False  # the range before drawn too (dashed)
    table: Any = None
    previous: Any = None  # the values of the range before, when compared
    graph: graph.Graph | None = None


def _shown_graph(key: str) -> ShownGraph:
    gateway = gw()
    series = vals.meter_series(gateway, key)["series"] if _stored(key) else []
    readable.labelled(series, gateway.settings.conventions.language)
    measured = [s for s in series if s["numeric"]] or series
    chosen = arg_int("series", measured[0]["id"] if measured else None, 0)
    span = request.args.get("range", "7d")
    days = next((d for name, _, d in RANGES if name == span), 7)
    until = int(gateway.clock.now().timestamp())
    since = until - days * 86_400
    info = next((s for s in series if s["id"] == chosen), None)
    counter = info is not None and graph.is_counter(info["quantity"], info["description"])
    view = request.args.get("view", "values")
    view = view if counter and view in graph.PERIODS else "values"
    zone = local_zone(gateway.settings.timezone)
    load = since
    if view in graph.PERIODS:  # whole periods, and the reading before the first one
        since = graph.boundaries(since, since, zone, view)[0]
        load = graph.boundaries(since - 1, since - 1, zone, view)[0]
    shown = ShownGraph(series, chosen, info, span, view, since, until, counter)
    shown.compare = request.args.get("compare") == "1"
    if info is not None:
        _, shown.table = vals.series_values(
            gateway, key, info["id"], since=load, limit=MAX_SERIES_PAGE, materialize=False
        )
        if shown.compare and view == "values":
            _, shown.previous = vals.series_values(gateway, key, info["id"],
                                                   since=2 * since - until, until=since,
                                                   limit=MAX_SERIES_PAGE,
                                                   materialize=False)  # fmt: skip
        shown.graph = graph.draw(shown.table, label=info["label"], unit=info["unit"],
                                 since=since, until=until, zone=zone, view=view,
                                 previous=shown.previous)  # fmt: skip
    return shown


@blueprint.get("/meters/<key>/graph.<kind>")
async def meter_graph_file(key: str, kind: str) -> Response:
    """The graph the meter page shows (the same query), as SVG or as CSV."""
    ops.get_meter(gw(), key)
    shown = _shown_graph(key)
    if shown.graph is None or not shown.graph.svg or kind not in ("svg", "csv"):
        raise NotFound(f"no graph {kind!r} for meter {key!r}")
    name = _file_name(key, shown, kind)
    if kind == "svg":
        response = Response(shown.graph.svg, mimetype="image/svg+xml")
    else:
        out = io.StringIO()
        zone = local_zone(gw().settings.timezone)
        rows = graph.csv_rows(shown.graph, shown.table, zone, previous=shown.previous)
        CsvWriter(out).writerows(rows)
        response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _file_name(key: str, shown: ShownGraph, kind: str) -> str:
    """The download name of the shown graph's export (SVG, CSV, or the PNG the page's script
    renders from the SVG)."""
    compared = "-compared" if shown.previous is not None else ""
    name = f"{key}-{shown.chosen}-{shown.span}-{shown.view}{compared}.{kind}"
    return re.sub(r"[^\w.-]", "_", name)


def _stored(key: str) -> bool:
    return gw().store.meter(key) is not None


@blueprint.post("/meters/<key>/read")
@admin_only
async def meter_read(key: str) -> Response:
    result = await ops.read_now(gw(), key)
    text = "Read OK" if result["ok"] else f"Reading failed: {result['error']}"
    return back("pages.meter", text, key=key)


@blueprint.post("/meters/<key>/settings")
@admin_only
async def meter_settings(key: str) -> Response:
    form = await request.form
    changes: dict[str, Any] = {
        "position": form.get("position", ""),
        "enabled": form.get("enabled") == "on",
    }
    if "multi_telegram" in form:  # a wireless meter's form has no wired fields
        changes["multi_telegram"] = form["multi_telegram"]
    for name in ("baud", "multi_telegram_limit"):
        if form.get(name, "").isdigit():
            changes[name] = int(form[name])
    _, error = await attempt(lambda: ops.update_meter(gw(), key, changes))
    return back("pages.meter", f"Refused: {detail_text(error)}" if error else "Saved", key=key)


@blueprint.post("/meters/<key>/remove")
@admin_only
async def meter_remove(key: str) -> Response:
    await ops.remove_meter(gw(), key)
    return back("pages.meters", f"Meter {key} removed")


# ------------------------------------------------------------------------------ search
