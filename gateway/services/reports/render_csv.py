"""The CSV layouts: x101 values, x102 readings, x120 latest, x140 telegrams, x201 events.

Semicolon-separated UTF-8 with CRLF line ends, so that a decimal comma never needs quoting;
text with a semicolon, quote or line break is quoted, and text a spreadsheet would take for a
formula starts with an apostrophe (``gateway.cells``). Every file opens with the preamble lines
of ``ReportContext.preamble`` (first cell starting with '#'), then one heading row.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import IO

import numpy as np

from mbusgw.core.units import ValueKind
from mbusgw.gateway.cells import CsvWriter, csv_text
from mbusgw.gateway.events import Event
from mbusgw.gateway.services.reports.context import ReportContext, WideColumns
from mbusgw.gateway.services.reports.conventions import flag_names, meter_clock, value_texts
from mbusgw.gateway.services.reports.selection import MeterValues, Selection
from mbusgw.gateway.store.model import NO_TIME


class _Rows:
    """A CSV writer that gathers rows in memory and hands them to the file in blocks (a
    meter at a time), which is several times faster than a text wrapper row by row. No text
    cell becomes a formula (``CsvWriter``)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.text = io.StringIO()
        self.writer = CsvWriter(self.text, delimiter=";", lineterminator="\r\n")
        self.writerow = self.writer.writerow
        self.writerows = self.writer.writerows

    def flush(self) -> None:
        self.out.write(self.text.getvalue().encode())
        self.text.seek(0)
        self.text.truncate()


@contextmanager
def _csv_writer(out: IO[bytes], ctx: ReportContext, headings: Sequence[str]) -> Iterator[_Rows]:
    rows = _Rows(out)
    rows.writerows(ctx.preamble())
    rows.writerow(headings)
    yield rows
    rows.flush()


def quoted(text: str) -> str:
    """A text field as ``_Rows`` writes it (quotes only where needed, never a formula)."""
    text = csv_text(text)
    if any(c in text for c in ';"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _meter_clocks(meter_times: np.ndarray) -> list[str]:
    return [meter_clock(t) if t != NO_TIME else "" for t in meter_times.tolist()]


def render_values(ctx: ReportContext, selection: Selection, out: IO[bytes]) -> None:
    """x101: one record per value."""
    c = ctx.conventions
    headings = c.headings(
        "meter", "quantity", "unit", "description", "time", "meter_time", "value", "flags"
    )
    sep = c.decimal_separator
    with _csv_writer(out, ctx, headings) as writer:
        for meter in selection:
            reading_times = meter.times.tolist()
            times = dict(zip(reading_times, map(c.time, reading_times), strict=True))
            clocks = dict(zip(reading_times, _meter_clocks(meter.meter_times), strict=True))
            for series in meter.series:
                t = series.table
                received = t.received_at.tolist()
                texts = value_texts(t.kind, t.mantissa, t.exponent, t.flags, t.blobs, sep)
                info = series.info
                if (t.kind == ValueKind.DECIMAL).all() and not t.flags.any():
                    # the common case, written without the csv module: digits need no quotes
                    head = ";".join(map(quoted, (meter.meter, info.quantity, info.unit)))
                    line = f"{head};{quoted(info.description)};{{}};{{}};{{}};\r\n".format
                    writer.text.write(
                        "".join(
                            map(
                                line,
                                map(times.__getitem__, received),
                                map(clocks.__getitem__, received),
                                texts,
                            )
                        )
                    )
                    continue
                writer.writerows(
                    zip(
                        repeat(meter.meter),
                        repeat(info.quantity),
                        repeat(info.unit),
                        repeat(info.description),
                        map(times.__getitem__, received),
                        map(clocks.__getitem__, received),
                        texts,
                        map(flag_names, t.flags.tolist()),
                    )
                )
            writer.flush()


def _wide_rows(
    meter: MeterValues, columns: WideColumns, sep: str, when: Callable[[int], str]
) -> list[list[str]]:
    grid = [[""] * len(columns) for _ in range(len(meter.times))]
    for series in meter.series:
        t = series.table
        column = columns.column[series.info.id]
        texts = value_texts(t.kind, t.mantissa, t.exponent, t.flags, t.blobs, sep)
        for row, text in zip(
            np.searchsorted(meter.times, t.received_at).tolist(), texts, strict=True
        ):
            grid[row][column] = text
    clocks = _meter_clocks(meter.meter_times)
    return [
        [meter.meter, when(t), clock, *cells]
        for t, clock, cells in zip(meter.times.tolist(), clocks, grid, strict=True)
    ]


def render_readings(ctx: ReportContext, selection: Selection, out: IO[bytes]) -> None:
    """x102: one row per reading, one column per quantity."""
    c = ctx.conventions
    columns = WideColumns(selection.series_of, selection.meters)
    headings = [*c.headings("meter", "time", "meter_time"), *columns.labels]
    with _csv_writer(out, ctx, headings) as writer:
        for meter in selection:
            writer.writerows(_wide_rows(meter, columns, c.decimal_separator, c.time))
            writer.flush()


IDENTITY_KEYS = ("position", "secondary_address", "manufacturer", "medium")


def render_latest(ctx: ReportContext, selection: Selection, out: IO[bytes]) -> None:
    """x120: one row per meter with its identity and its latest values."""
    c = ctx.conventions
    columns = WideColumns(selection.series_of, selection.meters)
    headings = [*c.headings("meter", "time", "meter_time", *IDENTITY_KEYS), *columns.labels]
    with _csv_writer(out, ctx, headings) as writer:
        for meter in selection.latest():
            identity = ctx.identity(meter.meter)
            extra = [getattr(identity, key) for key in IDENTITY_KEYS]
            for row in _wide_rows(meter, columns, c.decimal_separator, c.time):
                writer.writerow([*row[:3], *extra, *row[3:]])
            writer.flush()


def render_telegrams(ctx: ReportContext, selection: Selection, out: IO[bytes]) -> None:
    """x140: the raw telegrams of the readings, one frame per row, in hex."""
    c = ctx.conventions
    headings = c.headings("meter", "time", "frame", "telegram")
    with _csv_writer(out, ctx, headings) as writer:
        for meter, telegrams in selection.telegrams():
            for telegram in telegrams:
                time = c.time(telegram.received_at)
                writer.writerows(
                    (meter, time, index, frame.hex().upper())
                    for index, frame in enumerate(telegram.frames, 1)
                )
            writer.flush()


def event_detail(event: Event) -> str:
    return json.dumps(event.detail, ensure_ascii=False, sort_keys=True, default=str)


def render_events(ctx: ReportContext, events: Sequence[Event], out: IO[bytes]) -> None:
    """x201: one row per event."""
    c = ctx.conventions
    headings = c.headings("time", "event", "text", "meter", "detail")
    with _csv_writer(out, ctx, headings) as writer:
        for event in events:
            writer.writerow(
                [
                    c.time(int(event.at.timestamp())),
                    event.kind,
                    c.event_text(event.kind),
                    event.meter_key or "",
                    event_detail(event) if event.detail else "",
                ]
            )
