"""Which values a report carries: the window (value period and delivery cursor) and the
thinning (value interval), read from the store one meter at a time.

A report's cursor holds, per meter, the reception time of the newest reading already delivered
(or deliberately left out by the value interval). A report run includes each meter's readings
received after its cursor, but not before the value period's start, and not at or after the
run's ``until``. Per-meter cursors matter because a reading cycle is stored at its end: a report
that runs while a cycle is in progress must not step over the readings still to be stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from mbusgw.gateway.facade import RawTelegram, Store
from mbusgw.gateway.report_catalog import VALUE_INTERVALS
from mbusgw.gateway.services.reports.conventions import Conventions
from mbusgw.gateway.store.model import NO_TIME, SeriesInfo, ValueTable

AUTO_CYCLES = 180  # "Auto" reaches back at most this many reading cycles (manual 6.32.2)


@dataclass(frozen=True)
class Window:
    """``lower <= received_at < until`` (UTC seconds), after each meter's cursor."""

    lower: int
    until: int
    interval: str = "all"


@dataclass
class SeriesValues:
    info: SeriesInfo
    table: ValueTable


@dataclass
class MeterValues:
    """The included readings of one meter: their times and each series' values."""

    meter: str
    times: np.ndarray  # reception times of the included readings, ascending
    meter_times: np.ndarray  # the meter's own clock per reading (NO_TIME: none)
    series: list[SeriesValues]

    @property
    def count(self) -> int:
        return sum(len(s.table) for s in self.series)


@dataclass
class Selection:
    """A report run's view of the store; iterating it fills ``cursors`` and the counts."""

    store: Store
    window: Window
    conventions: Conventions
    delivered: dict[str, int] = field(default_factory=dict)  # the cursor the run starts from
    values: int = 0
    readings: int = 0
    late_meters: int = 0  # meters whose undelivered values reach back past the value period

    def __post_init__(self) -> None:
        self.cursors = dict(self.delivered)  # the cursor once this run is delivered
        by_meter: dict[str, list[SeriesInfo]] = {}
        for info in self.store.series():
            by_meter.setdefault(info.meter, []).append(info)
        self.series_of = by_meter
        self.meters = sorted(by_meter)
        self.late_meters = sum(
            1
            for m in self.meters
            if m in self.delivered and self.delivered[m] + 1 < self.window.lower
        )

    def since(self, meter: str) -> int:
        delivered = self.delivered.get(meter)
        return self.window.lower if delivered is None else max(self.window.lower, delivered + 1)

    def __iter__(self) -> Iterator[MeterValues]:
        """The meters with readings in the window, by name, thinned by the value interval."""
        for meter in self.meters:
            since = self.since(meter)
            if since >= self.window.until:
                continue
            tables = self.store.meter_values(meter, since, self.window.until)
            found = [t.received_at for t in tables.values() if len(t)]
            if not found:
                continue
            times = np.unique(np.concatenate(found))
            self.cursors[meter] = int(times[-1])
            keep = self.thin(times, self.delivered.get(meter))
            infos = {info.id: info for info in self.series_of[meter]}
            series = []
            meter_times = np.full(len(keep), NO_TIME, np.int64)
            thinned = len(keep) < len(times)
            for series_id, table in tables.items():
                if thinned:
                    rows = np.isin(table.received_at, keep)
                    if not rows.any():
                        continue
                    table = _take(table, rows)
                elif not len(table):
                    continue
                # every value of a reading carries the reading's meter time
                meter_times[np.searchsorted(keep, table.received_at)] = table.meter_time
                series.append(SeriesValues(infos[series_id], table))
            result = MeterValues(meter, keep, meter_times, series)
            self.values += result.count
            self.readings += len(keep)
            yield result

    def latest(self) -> Iterator[MeterValues]:
        """Each meter's newest value of every series (a snapshot, whatever the window)."""
        newest = self.store.latest(self.meters)
        order = np.lexsort((newest.received_at, newest.series))
        infos = {info.id: info for infos in self.series_of.values() for info in infos}
        per_meter: dict[str, list[SeriesValues]] = {}
        for row in order.tolist():
            info = infos.get(int(newest.series[row]))
            if info is not None:
                table = _take(newest, np.array([row]))
                per_meter.setdefault(info.meter, []).append(SeriesValues(info, table))
        for meter in self.meters:
            series = per_meter.get(meter)
            if not series:
                continue
            time = max(int(s.table.received_at[0]) for s in series)
            meter_time = max(int(s.table.meter_time[0]) for s in series)
            self.cursors[meter] = max(time, self.cursors.get(meter, time))
            result = MeterValues(
                meter, np.array([time], np.int64), np.array([meter_time], np.int64), series
            )
            self.values += result.count
            self.readings += 1
            yield result

    def telegrams(self) -> Iterator[tuple[str, list[RawTelegram]]]:
        """Raw telegrams of the window, meter by meter, thinned like the values."""
        for meter in sorted(m.name for m in self.store.meters()):
            since = self.since(meter)
            if since >= self.window.until:
                continue
            raw = self.store.raw_telegrams(meter, since, self.window.until)
            if not raw:
                continue
            times = np.unique(np.array([r.received_at for r in raw], np.int64))
            self.cursors[meter] = int(times[-1])
            keep = set(self.thin(times, self.delivered.get(meter)).tolist())
            picked = [r for r in raw if r.received_at in keep]
            self.readings += len(picked)
            self.values += sum(len(r.frames) for r in picked)
            yield meter, picked

    def thin(self, times: np.ndarray, previous: int | None) -> np.ndarray:
        """The first reading of each interval, skipping the interval already delivered."""
        rule = VALUE_INTERVALS[self.window.interval]
        if rule is None or not len(times):
            return times
        buckets = np.array([self.bucket(int(t), rule) for t in times.tolist()], np.int64)
        before = self.bucket(previous, rule) if previous is not None else None
        first = np.ones(len(times), bool)
        first[1:] = buckets[1:] != buckets[:-1]
        if before is not None:
            first[0] = buckets[0] != before
        return times[first]

    def bucket(self, seconds: int, rule: int | str) -> int:
        local = self.conventions.local(seconds)
        if isinstance(rule, int):
            offset = local.utcoffset() or dt.timedelta(0)
            return (seconds + int(offset.total_seconds())) // rule
        day = local.date().toordinal()
        if rule == "day":
            return day
        if rule == "week":  # weeks start on the conventions' first day
            return (day - 1 - self.conventions.week_start()) // 7
        return local.year * 12 + local.month


def _take(table: ValueTable, rows: np.ndarray) -> ValueTable:
    """The rows of ``table`` picked by a mask or by indices."""
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    blobs = None
    if table.blobs is not None:
        blobs = tuple(table.blobs[i] for i in rows.tolist())
    return ValueTable(*(getattr(table, name)[rows] for name in ValueTable.COLUMNS), blobs)
