"""Template numbers → renderers, and rendering a report into a spooled file.

``render`` runs in a worker thread (it reads the store and writes the file, both blocking);
the file stays in memory up to ``SPOOL_BYTES`` and goes to a temporary file beyond, so a large
report costs disk, not memory.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from mbusgw.gateway.events import Event
from mbusgw.gateway.report_catalog import Layout, layout_of, protocol_of
from mbusgw.gateway.services.reports import render_csv, render_excel, render_json
from mbusgw.gateway.services.reports.context import ReportContext
from mbusgw.gateway.services.reports.selection import Selection

SPOOL_BYTES = 4 * 1024 * 1024

RENDERERS: dict[int, Callable[[ReportContext, Any, IO[bytes]], None]] = {
    101: render_csv.render_values,
    102: render_csv.render_readings,
    112: render_excel.render_workbook,
    120: render_csv.render_latest,
    130: render_json.render_json,
    140: render_csv.render_telegrams,
    201: render_csv.render_events,
    230: render_json.render_events_json,
}


@dataclass
class Rendered:
    """A rendered report, ready to send: the file and what the receiver is told about it."""

    file: IO[bytes]
    size: int
    filename: str
    content_type: str
    subject: str
    body: str
    protocol: str
    values: int  # values (or events, or telegram frames) in the report
    readings: int
    cursors: dict[str, int]  # the delivery cursor once this report is accepted

    def data(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


def file_name(ctx: ReportContext, layout: Layout) -> str:
    """``<device>_<report>_<UTC time><ext>``, with only safe characters."""
    parts = [ctx.device, ctx.name, ctx.stamp] + (["test"] if ctx.test else [])
    safe = [re.sub(r"[^A-Za-z0-9.-]+", "-", part).strip("-.") or "x" for part in parts]
    return "_".join(safe) + layout.extension


def render(ctx: ReportContext, source: Selection | Sequence[Event]) -> Rendered:
    """Render ``source`` (a selection of values, or events) with the context's template."""
    layout = layout_of(ctx.template)
    file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (returned open)
    try:
        RENDERERS[layout.number](ctx, source, file)
        size = file.tell()
        file.seek(0)
    except BaseException:
        file.close()
        raise
    if isinstance(source, Selection):
        values, readings, cursors = source.values, source.readings, source.cursors
    else:
        values, readings, cursors = len(source), 0, {}
    return Rendered(
        file,
        size,
        file_name(ctx, layout),
        layout.content_type,
        subject(ctx, layout),
        body(ctx, layout, values, readings),
        protocol_of(ctx.template),
        values,
        readings,
        cursors,
    )


def subject(ctx: ReportContext, layout: Layout) -> str:
    c = ctx.conventions
    title = c.heading("event_subject" if layout.kind == "events" else "subject")
    test = f" ({c.heading('test')})" if ctx.test else ""
    return f"{ctx.device}: {title} {ctx.name}{test}"


def body(ctx: ReportContext, layout: Layout, values: int, readings: int) -> str:
    """The text of an e-mail report (the file is attached)."""
    c = ctx.conventions
    lines = [
        f"{c.heading('device')}: {ctx.device}",
        f"{c.heading('contact')}: {ctx.contact}",
        f"{c.heading('report')}: {ctx.name} ({c.heading('template')} {ctx.template})",
        f"{c.heading('from')}: {c.time(ctx.window.lower)}",
        f"{c.heading('until')}: {c.time(ctx.window.until)}",
    ]
    if layout.kind == "events":
        lines.append(f"{c.heading('events')}: {values}")
    else:
        lines += [f"{c.heading('readings')}: {readings}", f"{c.heading('values')}: {values}"]
    if ctx.test:
        lines.insert(0, c.heading("test").upper())
    return "\n".join(lines) + "\n"
