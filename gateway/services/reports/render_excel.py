"""x112: an Excel workbook, written with openpyxl's write-only mode (rows stream to a
temporary file, so memory does not grow with the report).

Two sheets: a summary (identity, window, counts) and the values, one row per reading with one
column per quantity, as in x102. Numbers are numeric cells, times are date-time cells in the
gateway's local time (Excel has no time zones; the summary names the zone).
"""

from __future__ import annotations

import datetime as dt
from typing import IO, Any

from mbusgw.core.units import ValueKind
from mbusgw.gateway.cells import sheet_row
from mbusgw.gateway.services.reports.context import ReportContext, WideColumns
from mbusgw.gateway.services.reports.selection import Selection
from mbusgw.gateway.store.model import NO_TIME, ValueTable

_EPOCH = dt.datetime(1970, 1, 1)


def cell_values(table: ValueTable) -> list[Any]:
    """Each value as a spreadsheet cell: numbers as numbers, dates as dates, bytes as hex
    (text is made safe where the row is written, by ``sheet_row``)."""
    kinds = table.kind.tolist()
    exponents = set(table.exponent.tolist())
    if kinds and all(k == ValueKind.DECIMAL for k in kinds) and len(exponents) == 1:
        exponent = exponents.pop()
        if exponent >= 0:
            scale = 10**exponent
            return [m * scale for m in table.mantissa.tolist()]
        return (table.mantissa / float(10**-exponent)).tolist()
    out: list[Any] = []
    for i, kind in enumerate(kinds):
        value = table.value(i)
        if kind == ValueKind.DECIMAL:
            value = float(value) if not isinstance(value, int) else value
        elif kind == ValueKind.BYTES:
            value = value.hex().upper()
        out.append(value)
    return out


def render_workbook(ctx: ReportContext, selection: Selection, out: IO[bytes]) -> None:
    from openpyxl import Workbook  # imported when needed: it is large and rarely used

    c = ctx.conventions
    book = Workbook(write_only=True)
    summary = book.create_sheet(c.heading("summary_sheet"))
    sheet = book.create_sheet(c.heading("values_sheet"))
    columns = WideColumns(selection.series_of, selection.meters)
    sheet.append(sheet_row(sheet, [*c.headings("meter", "time", "meter_time"), *columns.labels]))
    zone = c.zone
    meters = 0
    for meter in selection:
        meters += 1
        width = len(columns)
        rows = [[None] * width for _ in range(len(meter.times))]
        for series in meter.series:
            column = columns.column[series.info.id]
            position = meter.times.searchsorted(series.table.received_at).tolist()
            for row, value in zip(position, cell_values(series.table), strict=True):
                rows[row][column] = value
        name = meter.meter
        for t, clock, cells in zip(
            meter.times.tolist(), meter.meter_times.tolist(), rows, strict=True
        ):
            local = dt.datetime.fromtimestamp(t, zone).replace(tzinfo=None)
            own = _EPOCH + dt.timedelta(seconds=clock) if clock != NO_TIME else None
            sheet.append(sheet_row(sheet, [name, local, own, *cells]))
    for key, value in (
        ("device", ctx.device),
        ("contact", ctx.contact),
        ("report", ctx.name),
        ("template", ctx.template),
        ("from", c.time(ctx.window.lower)),
        ("until", c.time(ctx.window.until)),
        ("generated", c.time(ctx.generated)),
        ("meters", meters),
        ("readings", selection.readings),
        ("values", selection.values),
    ):
        summary.append(sheet_row(summary, [c.heading(key), value]))
    if ctx.test:
        summary.append(sheet_row(summary, [c.heading("test")]))
    book.save(out)
