"""The meter page's graph, drawn on the server as SVG from the store's columns, so it shows
without JavaScript, exports as the very file the page shows, and is tested without a browser.

- The time axis spans the chosen range (not just the data), with ticks on calendar
  boundaries in the configured zone (hours, days, weeks, months, years; daylight saving
  changes move the ticks with the wall clock).
- The y axis has "nice" ticks in a scaled unit (Wh -> kWh/MWh ...; ``web.readable``).
- The line breaks where readings are missing (a step over three times the usual interval)
  or invalid.
- A counter (energy, volume ...) can also be drawn as consumption per hour, day or month:
  the differences of the register; a step where the register went down (a reset or a
  meter exchange) is not counted.
- ``graph.js`` adds a hover/tap read-out from the points the SVG carries (``data-points``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from html import escape
from typing import Any

import numpy as np

from mbusgw.core.units import Flag, ValueKind
from mbusgw.web.numbers import value_texts
from mbusgw.web.plain import plain
from mbusgw.web.readable import number, scaled
from mbusgw.web.times import FORMAT

W, H, LEFT, RIGHT, TOP, BOTTOM = 900, 300, 72, 16, 14, 34
PLOT_W, PLOT_H = W - LEFT - RIGHT, H - TOP - BOTTOM
MAX_TIME_TICKS = 8
COUNTERS = frozenset({"energy", "volume", "mass", "hca", "on_time", "operating_time"})
PERIODS = ("hour", "day", "month")
VIEWS = (("values", "Values"), ("hour", "Consumption per hour"),
         ("day", "Consumption per day"), ("month", "Consumption per month"))  # fmt: skip
# presentation attributes: the exported file looks like the page (whose CSS may override them)
_FONT = 'font-family="sans-serif"'
_TEXT = 'font-size="11" fill="#5d6878"'
_GRID = 'class="grid-line" stroke="#e4e8ee"'
_STROKE = 'stroke="#9aa6b5"'
_FILL = 'fill="#0b5cad"'
_LINE = 'fill="none" stroke="#0b5cad" stroke-width="1.6"'
_PREVIOUS = 'fill="none" stroke="#9aa6b5" stroke-width="1.2" stroke-dasharray="5 3"'
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
# tick steps, smallest first: (unit, count, approximate seconds)
_STEPS = (("hour", 1, 3600), ("hour", 3, 10_800), ("hour", 6, 21_600), ("hour", 12, 43_200),
          ("day", 1, 86_400), ("day", 2, 172_800), ("week", 1, 604_800),
          ("month", 1, 2_629_746), ("month", 3, 7_889_238), ("year", 1, 31_556_952))  # fmt: skip


def is_counter(quantity: str, description: str) -> bool:
    """A register that only grows (its differences are consumption): the plain or stored
    value of a counting quantity, not a maximum or minimum."""
    words = description.split(", ") if description else []
    return quantity in COUNTERS and not {"maximum", "minimum", "error state"} & set(words)


# ------------------------------------------------------------------------------ calendar


def boundaries(since: float, until: float, zone: tzinfo, unit: str, count: int = 1) -> list[int]:
    """Epoch seconds of the local calendar boundaries (every ``count`` ``unit``) from the
    last one at or before ``since`` to the first one at or after ``until``."""
    start = datetime.fromtimestamp(since, zone).replace(tzinfo=None)
    if unit == "hour":
        wall = start.replace(minute=0, second=0, microsecond=0)
        wall -= timedelta(hours=wall.hour % count)
    elif unit in ("day", "week"):
        wall = datetime.combine(start.date(), datetime.min.time())
        if unit == "week":
            wall -= timedelta(days=wall.weekday())
    elif unit == "month":
        wall = datetime(start.year, (start.month - 1) // count * count + 1, 1)
    else:
        wall = datetime(start.year, 1, 1)
    out: list[int] = []
    while True:
        moment = int(wall.replace(tzinfo=zone).timestamp())
        if not out or moment > out[-1]:  # the repeated hour of a clock change: once
            out.append(moment)
        if moment >= until:
            return out
        wall = _step(wall, unit, count)


def _step(wall: datetime, unit: str, count: int) -> datetime:
    """The next boundary in wall-clock time (so a day stays a calendar day over a clock
    change)."""
    if unit == "hour":
        return wall + timedelta(hours=count)
    if unit in ("day", "week"):
        return wall + timedelta(days=count * (7 if unit == "week" else 1))
    if unit == "month":
        months = wall.month - 1 + count
        return wall.replace(year=wall.year + months // 12, month=months % 12 + 1)
    return wall.replace(year=wall.year + count)


def time_ticks(since: float, until: float, zone: tzinfo) -> list[tuple[int, str]]:
    """At most ``MAX_TIME_TICKS`` ticks on calendar boundaries inside [since, until]."""
    span = max(until - since, 1)
    unit, count, _ = next((s for s in _STEPS if span / s[2] <= MAX_TIME_TICKS), _STEPS[-1])
    if unit == "year" and span / 31_556_952 > MAX_TIME_TICKS:
        count = math.ceil(span / 31_556_952 / MAX_TIME_TICKS)
    inside = [t for t in boundaries(since, until, zone, unit, count) if since <= t <= until]
    return [(t, _tick_label(t, zone, unit)) for t in inside]


def _tick_label(seconds: int, zone: tzinfo, unit: str) -> str:
    local = datetime.fromtimestamp(seconds, zone)
    if unit == "hour" and (local.hour or local.minute):
        return local.strftime("%H:%M")
    if unit in ("hour", "day", "week"):
        return f"{local.day} {_MONTHS[local.month - 1]}"
    if unit == "month":
        return (
            f"{_MONTHS[local.month - 1]} {local.year}"
            if local.month == 1
            else _MONTHS[local.month - 1]
        )
    return str(local.year)


# ------------------------------------------------------------------------------ values


def nice_ticks(low: float, high: float, count: int = 5) -> tuple[list[float], int]:
    """Ticks at 1, 2, 2.5 or 5 times a power of ten covering [low, high], and the decimals
    their labels need."""
    if high <= low:
        low, high = (low - 1, high + 1) if low == 0 else (low - abs(low) / 10, high + abs(low) / 10)
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if raw <= m * power * (1 + 1e-9))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9) + (1 if step / power == 2.5 else 0))
    return [round(i * step, decimals + 2) for i in range(first, last + 1)], decimals


def consumption(
    times: np.ndarray, values: np.ndarray, bounds: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per bucket [bounds[i], bounds[i+1]): the sum of the register's increases that end in
    it, and whether the bucket has any reading. A decrease (reset, meter exchange) and a
    step from or to an invalid value count nothing."""
    buckets = len(bounds) - 1
    steps = np.diff(values)
    counted = np.isfinite(steps) & (steps >= 0)
    where = np.searchsorted(np.asarray(bounds), times[1:], side="right") - 1
    inside = counted & (where >= 0) & (where < buckets)
    amounts = np.bincount(where[inside], weights=steps[inside], minlength=buckets)
    seen_at = np.searchsorted(np.asarray(bounds), times, side="right") - 1
    seen = np.zeros(buckets, bool)
    seen[seen_at[(seen_at >= 0) & (seen_at < buckets)]] = True
    return amounts[:buckets], seen


@dataclass
class Graph:
    """What the page shows for one series and range: the SVG and the data behind it."""

    label: str
    unit: str  # the stored unit (of the CSV)
    since: int
    until: int
    view: str  # "values" or a consumption period
    svg: str = ""
    points: int = 0
    rows: list[tuple[int, int, float]] = field(default_factory=list)  # bars: start, end, value
    message: str = ""
    axis_unit: str = ""  # the scaled unit the axis and the bars' labels are in


def draw(
    table: Any,
    *,
    label: str,
    unit: str,
    since: int,
    until: int,
    zone: tzinfo,
    view: str = "values",
    previous: Any = None,
) -> Graph:
    """The graph of a ``ValueTable`` over [since, until] (epoch s) in ``zone``; with
    ``previous`` (the values of the range before, same length) that period too, dashed, for
    comparing the two (the values view)."""
    graph = Graph(label, unit, since, until, view)
    numeric = np.isin(table.kind, (ValueKind.DECIMAL, ValueKind.REAL))
    if len(table) and not numeric.any():
        graph.message = "These values are not numbers (dates, text): they are listed below."
        return graph
    times, values = _numbers(table)
    before = _numbers(previous) if previous is not None and view not in PERIODS else None
    if view in PERIODS:
        bounds = boundaries(since, until, zone, view)
        amounts, seen = consumption(times, values, bounds)
        # sums of floats: back to the register's decimals (0.331 + 0.002 is 0.333, not more)
        places = -int(table.exponent[numeric].min()) if numeric.any() else 0
        amounts = np.round(amounts, max(places, 0))
        graph.rows = [
            (bounds[i], bounds[i + 1], float(amounts[i])) for i in range(len(amounts)) if seen[i]
        ]
        shown = np.array([r[2] for r in graph.rows]) if graph.rows else np.zeros(0)
    else:
        shown = values[np.isfinite(values)]
        if before is not None and len(shown):
            shown = np.r_[shown, before[1][np.isfinite(before[1])]]
    if not len(shown):
        graph.message = "No values in this range."
        return graph
    size = float(np.abs(shown).max())
    factor, graph.axis_unit = _factor(size, unit)
    low, high = (0.0, float(shown.max())) if view in PERIODS else (shown.min(), shown.max())
    ticks, decimals = nice_ticks(float(low) * factor, float(high) * factor)
    frame = _Frame(since, until, ticks[0], ticks[-1])
    parts = [_axes(frame, ticks, decimals, time_ticks(since, until, zone))]
    hover: list[list[Any]] = []
    if view in PERIODS:
        parts.append(_bars(frame, graph.rows, factor, graph.axis_unit, zone, hover))
        graph.points = len(graph.rows)
    else:
        if before is not None:  # drawn first, under the current period, shifted onto it
            shift = until - since
            parts.append(_line(frame, before[0] + shift, before[1], factor, unit, zone, [], True))
        parts.append(_line(frame, times, values, factor, unit, zone, hover))
        graph.points = int(np.isfinite(values).sum())
    title = f"{label} ({graph.axis_unit})" if graph.axis_unit else label
    graph.svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" {_FONT} '
        f'aria-label="{escape(title)}" data-points="{escape(json.dumps(hover))}">'
        f"<title>{escape(title)}</title>{''.join(parts)}</svg>"
    )
    return graph


def _numbers(table: Any) -> tuple[np.ndarray, np.ndarray]:
    """Times and float values of a ``ValueTable``; NaN where a value is invalid or no number."""
    numeric = np.isin(table.kind, (ValueKind.DECIMAL, ValueKind.REAL))
    values = table.as_float()
    values[~numeric | ((table.flags & Flag.INVALID) != 0)] = np.nan
    return table.received_at.astype(np.int64), values


def _factor(size: float, unit: str) -> tuple[float, str]:
    shown, scaled_unit = scaled(size, unit)
    return (shown / size if size else 1.0), scaled_unit


@dataclass(frozen=True)
class _Frame:
    t0: float
    t1: float
    v0: float
    v1: float

    def x(self, t: Any) -> Any:
        return LEFT + (t - self.t0) / max(self.t1 - self.t0, 1) * PLOT_W

    def y(self, v: Any) -> Any:
        return TOP + (self.v1 - v) / ((self.v1 - self.v0) or 1) * PLOT_H


def _axes(frame: _Frame, ticks: list[float], decimals: int, times: list[tuple[int, str]]) -> str:
    out = []
    for v in ticks:
        y = frame.y(v)
        out.append(f'<line {_GRID} x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="y-tick" {_TEXT} x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{v:.{decimals}f}</text>"
        )
    for t, text in times:
        x = frame.x(t)
        out.append(
            f'<line class="tick" {_STROKE} x1="{x:.1f}" x2="{x:.1f}" y1="{H - BOTTOM}" '
            f'y2="{H - BOTTOM + 4}"/>'
        )
        out.append(
            f'<text class="x-tick" {_TEXT} data-time="{t}" x="{x:.1f}" y="{H - 10}" '
            f'text-anchor="middle">{escape(text)}</text>'
        )
    out.append(
        f'<line class="axis" {_STROKE} x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{H - BOTTOM}"/>'
    )
    out.append(
        f'<line class="axis" {_STROKE} x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" '
        f'y2="{H - BOTTOM}"/>'
    )
    return "".join(out)


def local_texts(seconds: np.ndarray, zone: tzinfo) -> list[str]:
    """``_when`` of many times at once: the zone is asked once per UTC day (twice: its first
    and last second), and only a day with a clock change is formatted time by time."""
    days = seconds // 86_400
    offsets = np.zeros(len(seconds), np.int64)
    names: list[str] = [""] * len(seconds)
    exact = np.zeros(len(seconds), bool)
    for day in np.unique(days).tolist():
        first = datetime.fromtimestamp(day * 86_400, zone)
        last = datetime.fromtimestamp(day * 86_400 + 86_399, zone)
        where = np.flatnonzero(days == day)
        if first.utcoffset() != last.utcoffset():
            exact[where] = True
            continue
        offsets[where] = int(first.utcoffset().total_seconds())  # type: ignore[union-attr]
        name = first.tzname() or ""
        for i in where.tolist():
            names[i] = name
    texts = np.datetime_as_string((seconds + offsets).astype("datetime64[s]")).tolist()
    return [
        _when(int(t), zone) if exact[i] else f"{texts[i].replace('T', ' ')} {names[i]}"
        for i, t in enumerate(seconds.tolist())
    ]


def _when(seconds: int, zone: tzinfo) -> str:
    return datetime.fromtimestamp(seconds, zone).strftime(FORMAT)


def _line(
    frame: _Frame,
    times: np.ndarray,
    values: np.ndarray,
    factor: float,
    unit: str,
    zone: tzinfo,
    hover: list[list[Any]],
    previous: bool = False,
) -> str:
    good = np.isfinite(values)
    if not good.any():
        return ""
    # a new segment after an invalid value or a step over three times the usual interval
    steps = np.diff(times)
    usual = float(np.median(steps)) if len(steps) else 0.0
    breaks = np.zeros(len(times), bool)
    breaks[1:] = (steps > 3 * usual) if usual > 0 else False
    breaks[1:] |= ~good[:-1]
    segment = np.cumsum(breaks)[good]
    t, v = times[good], values[good] * factor
    column = np.clip(np.round(frame.x(t)).astype(np.int64), 0, W)
    key = segment * (W + 1) + column
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    low, high = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
    ends = np.r_[starts[1:], len(v)] - 1
    rising = v[ends] >= v[starts]
    # each column of a segment: its low and high value, in the order the line passes them
    xs = np.round(frame.x(t[starts]), 1).tolist()
    firsts = frame.y(np.where(rising, low, high)).round(1).tolist()
    seconds = frame.y(np.where(rising, high, low)).round(1).tolist()
    moves = np.r_[True, segment[starts][1:] != segment[starts][:-1]].tolist()
    paths = []
    for x, first, second, move in zip(xs, firsts, seconds, moves, strict=True):
        paths.append(f"{'M' if move else 'L'}{x} {first}")
        if second != first:
            paths.append(f"L{x} {second}")
    # the read-out: the last value of each column, exact as stored (a float's shortest text)
    raw = values[good][ends].tolist()
    lasts = frame.y(v[ends]).round(1).tolist()
    hover += [
        [x, y, when, f"{value!r} {unit}".rstrip()]
        for x, y, when, value in zip(xs, lasts, local_texts(t[ends], zone), raw, strict=True)
    ]
    dots = ""
    if len(v) < 60:
        dots = "".join(
            f'<circle class="point" {_FILL} cx="{frame.x(a):.1f}" cy="{frame.y(b):.1f}" r="2.5"/>'
            for a, b in zip(t.tolist(), v.tolist(), strict=True)
        )
    if previous:
        return f'<path class="line previous" {_PREVIOUS} d="{" ".join(paths)}"/>'
    return f'<path class="line" {_LINE} d="{" ".join(paths)}"/>{dots}'


def _bars(
    frame: _Frame,
    rows: list[tuple[int, int, float]],
    factor: float,
    unit: str,
    zone: tzinfo,
    hover: list[list[Any]],
) -> str:
    out = []
    base = frame.y(0.0)
    for start, end, amount in rows:
        x0, x1 = frame.x(max(start, frame.t0)), frame.x(min(end, frame.t1))
        width = max(x1 - x0 - 1, 1)
        top = frame.y(amount * factor)
        text = f"{number(amount * factor)} {unit}".rstrip()
        when = _when(start, zone)
        out.append(
            f'<rect class="bar" {_FILL} fill-opacity=".6" x="{x0:.1f}" y="{top:.1f}" '
            f'width="{width:.1f}" height="{max(base - top, 0):.1f}" data-value="{amount!r}">'
            f"<title>{escape(when)}: {escape(text)}</title></rect>"
        )
        hover.append([round(float(x0 + width / 2), 1), round(float(top), 1), when, text])
    return "".join(out)


def csv_rows(graph: Graph, table: Any, zone: tzinfo, previous: Any = None) -> list[list[str]]:
    """What the graph shows as CSV rows (a header first): the values, or the bars, exact in
    the stored unit. Compared with ``previous`` (the values of the range before, dashed on
    the graph), a first column says which period a row is of: its rows first, at the times
    they were read."""
    unit = graph.unit
    if graph.view in PERIODS:
        head = ["from", "until", f"consumption ({unit})" if unit else "consumption"]
        return [head] + [
            [_when(a, zone), _when(b, zone), repr(amount)] for a, b, amount in graph.rows
        ]
    head = ["time", f"{graph.label} ({unit})" if unit else graph.label]
    if previous is None:
        return [head] + _value_rows(table, zone)
    return [
        ["period", *head],
        *(["previous", *row] for row in _value_rows(previous, zone)),
        *(["current", *row] for row in _value_rows(table, zone)),
    ]


def _value_rows(table: Any, zone: tzinfo) -> list[list[str]]:
    """Time and exact value (the stored decimals, not through a float) of each number."""
    shown = np.isfinite(table.as_float()).tolist()
    exact = value_texts(table, plain)
    return [
        [_when(t, zone), text]
        for t, text, ok in zip(table.received_at.tolist(), exact, shown, strict=True)
        if ok
    ]


def sparkline(durations: list[float], oks: list[bool]) -> str:
    """A meter's recent readings (oldest first) as a small bar chart: the height is the
    response time, a failed reading a full red bar."""
    if not durations:
        return ""
    width, height = 160, 28
    top = max(max(durations), 1.0)
    step = width / len(durations)
    bars = []
    for i, (ms, ok) in enumerate(zip(durations, oks, strict=True)):
        tall = height if not ok else max(2.0, ms / top * height)
        colour = "#1b7f3b" if ok else "#b3261e"
        bars.append(
            f'<rect x="{i * step:.1f}" y="{height - tall:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{tall:.1f}" fill="{colour}"/>'
        )
    return (
        f'<svg class="sparkline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" role="img" aria-label="recent readings: '
        f'{sum(oks)} of {len(oks)} good">{"".join(bars)}</svg>'
    )
