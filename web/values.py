"""Values for the API and the pages: the series catalog, the latest values, a series' values
(JSON text made straight from the store's columns) and the live snapshot.

Like ``web.operations``, each takes the gateway and plain arguments and returns plain data.
"""

from __future__ import annotations

import io
import json
import math
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np

from mbusgw.core.jsonout import dumps
from mbusgw.core.units import Flag
from mbusgw.gateway.facade import CsvWriter, GatewayHandle
from mbusgw.web.errors import BadRequest, NotFound
from mbusgw.web.numbers import value_texts
from mbusgw.web.plain import (
    DEFAULT_SERIES_PAGE,
    MAX_SERIES_PAGE,
    find_meter,
    iso,
    plain,
    record_values,
)


class SeriesCatalog:
    """Every stored series by id, read once: a series never changes once stored, so the
    catalog is read again only when an id appears that it does not know."""

    def __init__(self) -> None:
        self.by_id: dict[int, Any] = {}
        # the JSON text of a value after its series id up to ``"value":``, by quantity, unit
        # and description: a few dozen texts for the thousands of series of a site
        self._tails: dict[tuple[str, str, str], str] = {}

    def refresh(self, store: Any, wanted: Iterable[int]) -> dict[int, Any]:
        if any(series not in self.by_id for series in wanted):
            self.by_id = {info.id: info for info in store.series()}
        return self.by_id

    def prefix(self, series: int) -> str:
        """The JSON text of a value of ``series`` (a known one) up to ``"value":``."""
        info = self.by_id[series]
        named = (info.quantity, info.unit, info.description)
        tail = self._tails.get(named)
        if tail is None:
            fields = {"quantity": named[0], "unit": named[1], "description": named[2]}
            tail = self._tails[named] = dumps(fields)[1:-1] + ',"value":'
        return f'{{"series":{series},{tail}'


_catalogs: weakref.WeakKeyDictionary[Any, SeriesCatalog] = weakref.WeakKeyDictionary()


def catalog(gw: GatewayHandle) -> SeriesCatalog:
    """The series catalog of the gateway's store (kept as long as the store is open)."""
    found = _catalogs.get(gw.store)
    if found is None:
        found = _catalogs[gw.store] = SeriesCatalog()
    return found


def series_names(gw: GatewayHandle, table: Any) -> dict[int, Any]:
    return catalog(gw).refresh(gw.store, set(table.series.tolist()))


def value_dicts(table: Any, names: dict[int, Any]) -> list[dict[str, Any]]:
    """One dict per value of a ``ValueTable`` (with the series' name and unit); the same
    fields, in the same order, as ``latest_values_json`` writes."""
    out = []
    stamps: dict[int, str | None] = {}  # a cycle's values share a few times: format each once
    series, flags, received = (
        table.series.tolist(),
        table.flags.tolist(),
        table.received_at.tolist(),
    )
    for i in range(len(table)):
        info = names.get(series[i])
        if info is None:
            continue
        value = {
            "series": info.id,
            "quantity": info.quantity,
            "unit": info.unit,
            "description": info.description,
            "value": plain(table.value(i)),
        }
        if flags[i] & Flag.INVALID:
            value["invalid"] = True
        at = received[i]
        read_at = stamps.get(at)
        if read_at is None:
            read_at = stamps[at] = iso(at)
        value["read_at"] = read_at
        out.append(value)
    return out


def latest_table(gw: GatewayHandle, keys: Iterable[str]) -> tuple[Any, dict[int, Any]] | None:
    """The newest stored values of the given meters (those with any) as the store's table,
    and the catalog entries of their series; None when none of them has values."""
    known = {m.name for m in gw.store.meters()}
    wanted = [k for k in keys if k in known]
    if not wanted:
        return None
    table = gw.store.latest(wanted)
    return table, series_names(gw, table)


def latest_by_meter(gw: GatewayHandle, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The newest stored values of the given meters, grouped by meter."""
    found = latest_table(gw, keys)
    if found is None:
        return {}
    table, names = found
    grouped: dict[str, dict[str, Any]] = {}
    for value in value_dicts(table, names):
        info = names.get(value["series"])
        if info is None:
            continue
        entry = grouped.setdefault(info.meter, {"read_at": value["read_at"], "values": []})
        entry["values"].append(value)
        entry["read_at"] = max(entry["read_at"], value["read_at"])
    return grouped


def latest_values(gw: GatewayHandle) -> dict[str, Any]:
    meters = list(gw.meters)
    latest = latest_by_meter(gw, [m.key for m in meters])
    return {
        "meters": [
            {
                "key": m.key,
                "position": m.position,
                "read_at": latest.get(m.key, {}).get("read_at"),
                "values": latest.get(m.key, {}).get("values", []),
            }
            for m in meters
        ]
    }


def latest_values_json(gw: GatewayHandle) -> str:
    """``latest_values`` as JSON text, written from the store's columns (the API's hot path:
    512 meters of ten values each). Each meter's part is kept between calls and written again
    only when its latest values in the store change."""
    meters = list(gw.meters)
    known = {m.name for m in gw.store.meters()}
    wanted = [m.key for m in meters if m.key in known]
    table = gw.store.latest(wanted) if wanted else None
    cache = latest_cache(gw)
    per_meter = cache.update(catalog(gw), gw.store, table)
    return '{"meters":[' + "".join(cache.meter_pieces(meters, per_meter)) + "]}"


def latest_cache(gw: GatewayHandle) -> LatestCache:
    """The texts of every meter's latest values, kept for the gateway's store: the latest
    values and the whole meter list share them (one copy of each meter's values)."""
    found = _latest_caches.get(gw.store)
    if found is None:
        found = _latest_caches[gw.store] = LatestCache()
    return found


class LatestCache:
    """The JSON text of each meter's latest values, with the latest-values table it was written
    from. A new table is compared with the last one column by column (a few numpy operations),
    and only the meters with a changed row are written again."""

    def __init__(self) -> None:
        self.table: Any = None
        self.row_meter: list[str | None] = []  # the meter of each row of ``table``
        self.per_meter: dict[str, tuple[str, int]] = {}  # meter: (values text, newest time)
        self.heads: dict[str, tuple[Any, tuple[str, int] | None, str]] = {}  # meter's part

    def update(self, cat: SeriesCatalog, store: Any, table: Any) -> dict[str, tuple[str, int]]:
        if table is None or not len(table):
            self.table, self.row_meter, self.per_meter = None, [], {}
            return self.per_meter
        rows = self._changed_rows(table)
        if rows is None:  # other series than last time: write every meter
            names = cat.refresh(store, set(table.series.tolist()))
            row_meter = [getattr(names.get(s), "meter", None) for s in table.series.tolist()]
            per_meter = _meter_values_texts(cat, names, table, row_meter)
        elif len(rows):
            row_meter = self.row_meter
            changed = {row_meter[i] for i in rows.tolist()}
            pick = np.array([m in changed for m in row_meter], dtype=bool)
            per_meter = dict(self.per_meter)
            per_meter.update(
                _meter_values_texts(
                    cat, cat.by_id, table.select(pick), [m for m in row_meter if m in changed]
                )
            )
        else:
            return self.per_meter
        self.table, self.row_meter, self.per_meter = table, row_meter, per_meter
        return per_meter

    def _changed_rows(self, table: Any) -> np.ndarray | None:
        """Rows of ``table`` that differ from the last table; None when the series differ."""
        last = self.table
        if last is None or len(last) != len(table) or not np.array_equal(last.series, table.series):
            return None
        changed = np.zeros(len(table), dtype=bool)
        for name in ("received_at", "kind", "exponent", "flags", "mantissa"):
            changed |= getattr(last, name) != getattr(table, name)
        if last.blobs is not None or table.blobs is not None:
            none = (None,) * len(table)
            old, new = last.blobs or none, table.blobs or none
            changed |= np.array([a != b for a, b in zip(old, new, strict=True)], dtype=bool)
        return np.flatnonzero(changed)

    def meter_pieces(self, meters: list[Any], per_meter: dict[str, tuple[str, int]]) -> list[str]:
        """The texts whose concatenation is the meters' parts, separated by commas. A part is
        its head (kept while the meter's position and values stay), its values text (kept in
        ``per_meter``, not copied into a part of its own) and the closing brackets."""
        kept, self.heads = self.heads, {}
        out = []
        for meter in meters:
            latest = per_meter.get(meter.key)
            last = kept.get(meter.key)
            if last is not None and last[0] == meter.position and last[1] is latest:
                head = last[2]
            else:
                read_at = latest[1] if latest is not None else None
                head = (
                    f'{{"key":{dumps(meter.key)},"position":{dumps(meter.position)},'
                    f'"read_at":{dumps(iso(read_at))},"values":['
                )
            self.heads[meter.key] = (meter.position, latest, head)
            out += (",", head, latest[0] if latest is not None else "", "]}")
        return out[1:]  # no comma before the first


_latest_caches: weakref.WeakKeyDictionary[Any, LatestCache] = weakref.WeakKeyDictionary()


def _meter_values_texts(
    cat: SeriesCatalog, names: dict[int, Any], table: Any, row_meter: list[str | None]
) -> dict[str, tuple[str, int]]:
    """Per meter of ``table``: the JSON text of its values (in the table's order) and the
    time of its newest one. ``row_meter`` names each row's meter (None: an unknown series)."""
    per_meter: dict[str, list[str]] = {}
    newest: dict[str, int] = {}
    texts = value_texts(table, plain)
    stamps = table.received_at.tolist()
    when = {t: f',"read_at":"{iso(t)}"}}' for t in set(stamps)}
    for meter, series, text, stamp, flags in zip(
        row_meter, table.series.tolist(), texts, stamps, table.flags.tolist(), strict=True
    ):
        if meter is None or series not in names:
            continue
        value = cat.prefix(series) + text + (',"invalid":true' if flags & Flag.INVALID else "")
        per_meter.setdefault(meter, []).append(value + when[stamp])
        newest[meter] = max(newest.get(meter, 0), stamp)
    return {meter: (",".join(values), newest[meter]) for meter, values in per_meter.items()}


def meter_series(gw: GatewayHandle, key: str) -> dict[str, Any]:
    find_meter(gw, key)
    return {
        "meter": key,
        "series": [
            {
                "id": info.id,
                "signature": info.signature.hex().upper(),
                "quantity": info.quantity,
                "unit": info.unit,
                "description": info.description,
                "numeric": info.unit != "",
            }
            for info in gw.store.series(key)
        ],
    }


def series_info(gw: GatewayHandle, key: str, series: int) -> Any:
    for info in gw.store.series(key):
        if info.id == series:
            return info
    raise NotFound(f"meter {key!r} has no series {series}")


def series_values(
    gw: GatewayHandle,
    key: str,
    series: int,
    since: float | None = None,
    until: float | None = None,
    limit: int = DEFAULT_SERIES_PAGE,
    as_float: bool = False,
    materialize: bool = True,
) -> tuple[dict[str, Any], Any]:
    """A page of one series: ``times`` (epoch s) and ``values``; ``next`` is the ``since`` of
    the following page (or None). Returns the JSON data and the page's ``ValueTable``
    (``materialize=False``: without ``times`` and ``values``, for ``series_json``)."""
    find_meter(gw, key)
    info = series_info(gw, key, series)
    if not 1 <= limit <= MAX_SERIES_PAGE:
        raise BadRequest(f"limit must be 1-{MAX_SERIES_PAGE}", {"limit": "out of range"})
    table = gw.store.values(series, since, until)
    following = None
    if len(table) > limit:
        following = str(int(table.received_at[limit]))
        table = _head(table, limit)
    times: list[int] = []
    values: list[Any] = []
    if materialize:
        times = table.received_at.tolist()
        if as_float:
            values = [v if math.isfinite(v) else None for v in table.as_float().tolist()]
        else:
            values = [plain(v) for v in table.values()]
    data = {
        "meter": key,
        "series": {
            "id": info.id,
            "signature": info.signature.hex().upper(),
            "quantity": info.quantity,
            "unit": info.unit,
            "description": info.description,
        },
        "since": iso(since),
        "until": iso(until),
        "times": times,
        "values": values,
        "next": following,
    }
    return data, table


def series_json(data: dict[str, Any], table: Any, as_float: bool) -> str:
    """``series_values`` as JSON text, the values written from the store's columns."""
    head = {k: v for k, v in data.items() if k not in ("times", "values")}
    times = ",".join(map(str, table.received_at.tolist()))
    if as_float:
        values = ",".join(
            repr(v) if math.isfinite(v) else "null" for v in table.as_float().tolist()
        )
    else:
        values = ",".join(value_texts(table, plain))
    return dumps(head)[:-1] + f',"times":[{times}],"values":[{values}]}}'


def _head(table: Any, n: int) -> Any:
    blobs = table.blobs[:n] if table.blobs is not None else None
    columns = {name: getattr(table, name)[:n] for name in table.COLUMNS}
    return type(table)(**columns, blobs=blobs)


def live_snapshot(gw: GatewayHandle) -> dict[str, Any]:
    now = gw.clock.now()
    meters = []
    for meter in gw.meters:
        reading = gw.live.latest(meter.key)
        if reading is None:
            continue
        good = gw.live.last_good(meter.key) or reading
        values = record_values(good.telegrams)
        meters.append(
            {
                "key": meter.key,
                "ok": reading.ok,
                "read_at": good.read_at.isoformat(timespec="seconds"),
                "age_s": round((now - good.read_at).total_seconds(), 3),
                "error": reading.error,
                "values": values,
            }
        )
    return {
        "continuous": gw.settings.reading.continuous,
        "version": gw.live.version,
        "meters": meters,
    }


def series_csv(data: dict[str, Any], table: Any) -> str:
    """A page of ``series_values`` as CSV: time, value, quantity, unit."""
    info = data["series"]
    times = table.received_at.astype("datetime64[s]").astype(str).tolist()
    tail = "," + ",".join(_csv_cell(info[k]) for k in ("quantity", "unit")) + "\r\n"
    values = [v if v[:1] != '"' else _csv_cell(json.loads(v)) for v in value_texts(table, plain)]
    lines = [f"{t}Z,{v}{tail}" for t, v in zip(times, values, strict=True)]
    return "time,value,quantity,unit\r\n" + "".join(lines)


def _csv_cell(text: str) -> str:
    out = io.StringIO()
    CsvWriter(out, lineterminator="").writerow([text])
    return out.getvalue()
