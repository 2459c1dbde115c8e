"""The JSON layouts: x130 values with units and meter identity, x230 events.

Written piece by piece, one meter at a time, so memory does not grow with the report. Keys are
English whatever the language setting (a machine format), and numbers are JSON numbers with a
decimal point; decimals are written exactly as the meter sent them (45.60 stays 45.60).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from typing import IO, Any

from mbusgw.core.units import ValueKind
from mbusgw.gateway.events import Event
from mbusgw.gateway.services.reports.context import ReportContext
from mbusgw.gateway.services.reports.conventions import format_decimals, value_texts
from mbusgw.gateway.services.reports.selection import Selection
from mbusgw.gateway.store.model import ValueTable

_dumps = json.JSONEncoder(ensure_ascii=False).encode
_NUMERIC = (ValueKind.DECIMAL, ValueKind.REAL)


def json_literals(table: ValueTable) -> list[str]:
    """Each value as a JSON literal: numbers exact, dates and text as strings, none as null."""
    kinds = table.kind.tolist()
    if kinds and all(k == ValueKind.DECIMAL for k in kinds):
        return format_decimals(table.mantissa, table.exponent, ".")
    texts = value_texts(table.kind, table.mantissa, table.exponent, table.flags, table.blobs, ".")
    out = []
    for kind, text in zip(kinds, texts, strict=True):
        if kind == ValueKind.NONE or text == "":
            out.append("null" if kind not in (ValueKind.TEXT, ValueKind.BCD_ERROR) else '""')
        elif kind in _NUMERIC:
            out.append(text if kind == ValueKind.DECIMAL or math.isfinite(float(text)) else "null")
        else:
            out.append(_dumps(text))
    return out


def _head(ctx: ReportContext) -> dict[str, Any]:
    c = ctx.conventions
    return {
        "device": {"name": ctx.device, "contact": ctx.contact},
        "report": {
            "name": ctx.name,
            "template": ctx.template,
            "test": ctx.test,
            "generated": c.time(ctx.generated),
            "from": c.time(ctx.window.lower),
            "until": c.time(ctx.window.until),
            "timezone": str(c.zone),
        },
    }


def _open(out: IO[bytes], ctx: ReportContext, array: str) -> io.TextIOWrapper:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="\n")
    head = _dumps(_head(ctx))
    text.write(head[:-1] + f', "{array}": [')
    return text


def _close(text: io.TextIOWrapper, extra: dict[str, Any]) -> None:
    text.write("]")
    for key, value in extra.items():
        text.write(f", {_dumps(key)}: {_dumps(value)}")
    text.write("}\n")
    text.flush()
    text.detach()


def render_json(ctx: ReportContext, selection: Selection, out: IO[bytes]) -> None:
    """x130: meters with their identity, series with quantity and unit, [time, value] pairs."""
    c = ctx.conventions
    text = _open(out, ctx, "meters")
    meters = 0
    for meter in selection:
        identity = ctx.identity(meter.meter)
        head = {"meter": meter.meter}
        head.update({k: v for k, v in vars(identity).items() if v not in ("", None)})
        text.write(("," if meters else "") + "\n" + _dumps(head)[:-1] + ', "series": [')
        meters += 1
        when = c.time_formatter()
        for n, series in enumerate(meter.series):
            info = series.info
            describe = {"quantity": info.quantity, "unit": info.unit}
            if info.description:
                describe["description"] = info.description
            times = [_dumps(when(t)) for t in series.table.received_at.tolist()]
            pairs = ", ".join(
                f"[{t}, {v}]" for t, v in zip(times, json_literals(series.table), strict=True)
            )
            text.write(("" if n == 0 else ",") + "\n " + _dumps(describe)[:-1])
            text.write(f', "values": [{pairs}]}}')
        text.write("]}")
    _close(text, {"count": {"meters": meters, "values": selection.values}})


def render_events_json(ctx: ReportContext, events: Sequence[Event], out: IO[bytes]) -> None:
    """x230: the events with their time, kind, text, meter and detail."""
    c = ctx.conventions
    text = _open(out, ctx, "events")
    for n, event in enumerate(events):
        item = {
            "time": c.time(int(event.at.timestamp())),
            "event": event.kind,
            "text": c.event_text(event.kind),
            "meter": event.meter_key,
            "detail": event.detail,
        }
        text.write(("," if n else "") + "\n" + json.dumps(item, ensure_ascii=False, default=str))
    _close(text, {"count": {"events": len(events)}})
