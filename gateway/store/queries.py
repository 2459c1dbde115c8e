"""Reading values, the meter log, raw telegrams and the latest values back.

Every query sees one seamless series: compacted day blocks first, then the rows still waiting
for compaction. Transactions only copy bytes out (one ``get`` per day, one seek per 15-minute
slot); decoding happens after the snapshot is released, so even a ten-year query holds a
reader for milliseconds and never pins pages for long.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import lmdb
import numpy as np

from mbusgw.gateway.errors import NotFound
from mbusgw.gateway.store.blocks import (
    MeterColumns,
    PackedColumn,
    SeriesColumn,
    block_times,
    columns_from_rows,
    decode_block,
    decode_block_log,
    decode_block_series,
    unpack_meta,
)
from mbusgw.gateway.store.catalog import Catalog
from mbusgw.gateway.store.env import StoreEnv
from mbusgw.gateway.store.keys import (
    block_key,
    day_of,
    id_key,
    reading_key,
    slot_of,
    unpack_block_key,
    unpack_reading_key,
)
from mbusgw.gateway.store.model import HeaderIdentity, MeterLog, ReadingValues, ValueTable
from mbusgw.gateway.store.raw import decode_raw
from mbusgw.gateway.store.rows import ENTRY_DTYPE, HEADER, LATEST_TIME, decode_row

# how far back the latest-value search looks (rows first, then day blocks)
LATEST_LOOKBACK_DAYS = 400


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``since <= received_at < until`` in seconds since the epoch (UTC)."""

    since: int = 0
    until: int = LATEST_TIME + 1

    @classmethod
    def of(cls, since: float | None, until: float | None) -> TimeRange:
        low = 0 if since is None else max(0, int(since))
        high = LATEST_TIME + 1 if until is None else min(LATEST_TIME + 1, int(until))
        return cls(low, max(low, high))


@dataclass(frozen=True, slots=True)
class RawTelegram:
    received_at: int
    seq: int
    frames: tuple[bytes, ...]
    header: HeaderIdentity | None = None  # what the first telegram's header said


def meter_days(txn: lmdb.Transaction, env: StoreEnv, meter_id: int) -> tuple[int, int] | None:
    """First and last day that have a block for the meter (kept by compaction)."""
    raw = txn.get(id_key(meter_id), db=env.db.meters)
    record = json.loads(raw) if raw is not None else {}
    if record.get("first_day") is None:
        return None
    return record["first_day"], record["last_day"]


def _blocks(txn: lmdb.Transaction, env: StoreEnv, meter_id: int, span: TimeRange) -> list[bytes]:
    days = meter_days(txn, env, meter_id)
    if days is None:
        return []
    first = max(days[0], day_of(span.since))
    last = min(days[1], day_of(span.until - 1))
    get, db = txn.get, env.db.blocks
    found = (get(block_key(day, meter_id), db=db) for day in range(first, last + 1))
    return [data for data in found if data is not None]


def _sources(
    txn: lmdb.Transaction, env: StoreEnv, meter_id: int, span: TimeRange
) -> tuple[list[bytes], list[bytes]]:
    """A meter's day blocks and its rows not yet compacted that cover ``span`` (bytes)."""
    return _blocks(txn, env, meter_id, span), meter_rows(txn, env.db.readings, meter_id, span)


def _decoded(
    found: tuple[list[bytes], list[bytes]], decode: Callable[[bytes], MeterColumns]
) -> list[MeterColumns]:
    """Blocks (decoded by ``decode``), then the rows, as columns: oldest first."""
    blocks, rows = found
    pieces = [decode(data) for data in blocks]
    if rows:
        pieces.append(columns_from_rows([decode_row(row) for row in rows]))
    return pieces


def meter_rows(
    txn: lmdb.Transaction,
    db: lmdb._Database,
    meter_id: int,
    span: TimeRange,
    *,
    keys: bool = False,
) -> list:
    """Values (or ``(key, value)``) of one meter in a slot-major table, one seek per slot."""
    cursor = txn.cursor(db=db)
    if not cursor.first():
        return []
    slot = max(slot_of(span.since), unpack_reading_key(cursor.key())[0])
    last = slot_of(span.until - 1)
    out = []
    while slot <= last and cursor.set_range(reading_key(slot, meter_id, 0)):
        found_slot, found_meter, _ = unpack_reading_key(cursor.key())
        if found_slot != slot:  # nothing of this meter in the slots in between: skip them
            slot = found_slot
            continue
        while found_meter == meter_id and found_slot == slot:
            out.append(cursor.item() if keys else cursor.value())
            if not cursor.next():
                break
            found_slot, found_meter, _ = unpack_reading_key(cursor.key())
        slot += 1
    return out


class Queries:
    """Read side of the store (thread-safe; every call takes its own short snapshot)."""

    def __init__(self, env: StoreEnv, catalog: Catalog) -> None:
        self.env = env
        self.catalog = catalog

    def _meter_id(self, txn: lmdb.Transaction, meter: str) -> int:
        meter_id = self.catalog.meter_id(txn, meter)
        if meter_id is None:
            raise NotFound(f"no meter {meter!r} in the store")
        return meter_id

    def values(
        self, series_id: int, since: float | None = None, until: float | None = None
    ) -> ValueTable:
        """One series in time order, compacted and recent data alike."""
        span = TimeRange.of(since, until)
        with self.env.read() as txn:
            info = self.catalog.series_info(txn, series_id)
            if info is None:
                raise NotFound(f"no series {series_id} in the store")
            meter_id = self.catalog.meter_ids[info.meter]
            blocks = _blocks(txn, self.env, meter_id, span)
            rows = meter_rows(txn, self.env.db.readings, meter_id, span)
        found = [decode_block_series(data, series_id) for data in blocks]
        tables = [_packed_table(series_id, [f for f in found if f is not None])]
        tables += [_row_table(raw, series_id) for raw in rows]
        return _clip(_in_time_order(_concat(tables)), span)

    def meter_values(
        self, meter: str, since: float | None = None, until: float | None = None
    ) -> dict[int, ValueTable]:
        """Every series of a meter in a time range, by series id."""
        span = TimeRange.of(since, until)
        per_series: dict[int, list[ValueTable]] = {}
        for columns in self._meter_columns(meter, span, decode_block):
            for series_id, column in columns.series.items():
                received = columns.received_at[column.rows]
                per_series.setdefault(series_id, []).append(
                    _series_table(series_id, received, columns.meter_time[column.rows], column)
                )
        return {
            series_id: _clip(_in_time_order(_concat(tables)), span)
            for series_id, tables in sorted(per_series.items())
        }

    def meter_log(
        self, meter: str, since: float | None = None, until: float | None = None
    ) -> MeterLog:
        """The meter's readings (time, status, duration, retries, error, logged status byte)."""
        span = TimeRange.of(since, until)
        return _log_of(self._meter_columns(meter, span, decode_block_log), span)

    def readings_after(self, positions: Mapping[str, tuple[int, int]]) -> dict[str, ReadingValues]:
        """The readings of many meters past a position each, in one snapshot.

        A position ``(received_at, count)`` lies after every reading received before that
        second and after the first ``count`` received in it (in arrival order, which the store
        keeps): exact, although reception times are whole seconds. Meters the store does not
        know are left out.
        """
        sources: dict[str, tuple[list[bytes], list[bytes]]] = {}
        with self.env.read() as txn:
            for meter, (received_at, _) in positions.items():
                meter_id = self.catalog.meter_id(txn, meter)
                if meter_id is not None:
                    span = TimeRange.of(received_at, None)
                    sources[meter] = _sources(txn, self.env, meter_id, span)
        return {
            meter: _rows_after(found[1], *positions[meter])
            if not found[0]
            else _readings_after(_decoded(found, decode_block), *positions[meter])
            for meter, found in sources.items()
        }

    def _meter_columns(
        self, meter: str, span: TimeRange, decode: Callable[[bytes], MeterColumns]
    ) -> list[MeterColumns]:
        """A meter's blocks (decoded by ``decode``) and its recent rows in ``span``."""
        with self.env.read() as txn:
            found = _sources(txn, self.env, self._meter_id(txn, meter), span)
        return _decoded(found, decode)

    def raw_telegrams(
        self, meter: str, since: float | None = None, until: float | None = None
    ) -> list[RawTelegram]:
        """Raw frames of the meter's readings (kept for ``retention.raw_days``)."""
        span = TimeRange.of(since, until)
        with self.env.read() as txn:
            meter_id = self._meter_id(txn, meter)
            items = meter_rows(txn, self.env.db.raw, meter_id, span, keys=True)
        out = []
        for key, value in items:
            received_at, header, frames = decode_raw(value)
            if span.since <= received_at < span.until:
                out.append(RawTelegram(received_at, unpack_reading_key(key)[2], frames, header))
        out.sort(key=lambda raw: (raw.received_at, raw.seq))
        return out

    def latest(self, meters: Iterable[str] | None = None) -> ValueTable:
        """The newest value of every series of the given meters (default: all meters)."""
        with self.env.read() as txn:
            self.catalog.sync(txn)
            if meters is None:
                wanted = set(self.catalog.meters)
            else:
                wanted = {self._meter_id(txn, name) for name in meters}
            newest = _newest_rows(txn, self.env, wanted)
            candidates = _rows_table(list(newest.values()))
            have = set(candidates.series.tolist())
            older: dict[int, tuple[list[bytes], list[bytes]]] = {}
            for meter_id in wanted:
                if not set(self.catalog.meter_series.get(meter_id, ())) <= have:
                    older[meter_id] = _older_sources(txn, self.env, meter_id)
        tables = [candidates]
        for meter_id, (rows, blocks) in older.items():
            tables.append(_rows_table(rows))
            want = set(self.catalog.meter_series.get(meter_id, ())) - have
            for data in blocks:
                want -= set(tables[-1].series.tolist())
                if not want:
                    break
                tables.append(_block_tails(decode_block(data)))
        return _newest_per_series(tables)


# -- assembling results ----------------------------------------------------------------------


def _series_table(
    series_id: int, received: np.ndarray, meter_time: np.ndarray, column: SeriesColumn
) -> ValueTable:
    """A block column as a table (``received`` and ``meter_time`` already picked per value)."""
    return ValueTable(
        np.full(len(column.kind), series_id, np.uint32),
        received,
        meter_time,
        column.kind.astype(np.uint8),
        column.exponent.astype(np.int8),
        column.flags.astype(np.uint8),
        column.mantissa,
        None if column.blobs is None else tuple(column.blobs),
    )


def _packed_table(
    series_id: int, parts: list[tuple[np.ndarray, np.ndarray, PackedColumn]]
) -> ValueTable:
    """Block columns of one series as one table; kind/exponent/flags unpacked once for all."""
    if not parts:
        return ValueTable.empty()
    received = np.concatenate([p[0] for p in parts])
    kind, exponent, flags = unpack_meta(np.concatenate([p[2].meta for p in parts]))
    blobs = None
    if any(p[2].blobs is not None for p in parts):
        blobs = tuple(b for p in parts for b in (p[2].blobs or (None,) * len(p[0])))
    return ValueTable(
        np.full(len(received), series_id, np.uint32),
        received,
        np.concatenate([p[1] for p in parts]),
        kind.astype(np.uint8),
        exponent.astype(np.int8),
        flags.astype(np.uint8),
        np.concatenate([p[2].mantissa for p in parts]),
        blobs,
    )


def _row_table(raw: bytes, series_id: int | None = None) -> ValueTable:
    """The values of one reading row (of one series, or all)."""
    row = decode_row(raw)
    entries = row.entries
    blobs = row.blobs
    if series_id is not None:
        hits = np.flatnonzero(entries["series"] == series_id)
        entries = entries[hits]
        blobs = None if blobs is None else tuple(blobs[i] for i in hits.tolist())
    return _entries_table(entries, row.received_at, row.meter_time, blobs)


def _entries_table(
    entries: np.ndarray,
    received: int | np.ndarray,
    meter_time: int | np.ndarray,
    blobs: tuple[bytes | None, ...] | None,
) -> ValueTable:
    n = len(entries)
    return ValueTable(
        entries["series"].astype(np.uint32),
        np.array(np.broadcast_to(received, (n,)), np.int64),
        np.array(np.broadcast_to(meter_time, (n,)), np.int64),
        entries["kind"].astype(np.uint8),
        entries["exponent"].astype(np.int8),
        entries["flags"].astype(np.uint8),
        entries["mantissa"].astype(np.int64),
        blobs,
    )


def _concat(tables: list[ValueTable]) -> ValueTable:
    tables = [t for t in tables if len(t)]
    if not tables:
        return ValueTable.empty()
    if len(tables) == 1:
        return tables[0]
    columns = [
        np.concatenate([getattr(t, name) for t in tables]).astype(dtype, copy=False)
        for name, dtype in zip(ValueTable.COLUMNS, ValueTable.DTYPES, strict=True)
    ]
    blobs = None
    if any(t.blobs is not None for t in tables):
        blobs = tuple(b for t in tables for b in (t.blobs or (None,) * len(t)))
    return ValueTable(*columns, blobs)


def _in_time_order(table: ValueTable) -> ValueTable:
    received = table.received_at
    if len(received) < 2 or not (np.diff(received) < 0).any():
        return table
    return table.select(np.argsort(received, kind="stable"))


def _clip(table: ValueTable, span: TimeRange) -> ValueTable:
    received = table.received_at
    if not len(received) or (received[0] >= span.since and received[-1] < span.until):
        return table
    return table.select((received >= span.since) & (received < span.until))


def _readings_after(pieces: list[MeterColumns], received_at: int, count: int) -> ReadingValues:
    """The readings of ``pieces`` past the position ``(received_at, count)``, with values."""
    received = np.concatenate([p.received_at for p in pieces]) if pieces else np.zeros(0, np.int64)
    order = np.argsort(received, kind="stable")  # keeps arrival order within a second
    in_order = received[order]
    first = np.searchsorted(in_order, received_at, "left")
    after = np.searchsorted(in_order, received_at, "right")
    kept = order[min(first + count, after) :]
    position = np.full(len(received), -1, np.int64)  # each reading's index in the result
    position[kept] = np.arange(len(kept))
    tables: list[ValueTable] = []
    owners: list[np.ndarray] = []
    offset = 0
    for piece in pieces:
        for series_id, column in piece.series.items():
            owner = position[column.rows + offset]
            wanted = owner >= 0
            if wanted.any():
                rows = column.rows
                table = _series_table(
                    series_id, piece.received_at[rows], piece.meter_time[rows], column
                )
                tables.append(table.select(wanted))
                owners.append(owner[wanted])
        offset += len(piece)
    reading = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    values = _concat(tables)
    by_reading = np.lexsort((values.series, reading))  # per reading, series by id
    return ReadingValues(received[kept], reading[by_reading], values.select(by_reading))


def _rows_after(rows: list[bytes], received_at: int, count: int) -> ReadingValues:
    """``_readings_after`` of rows not yet compacted (no block in the span: the readings of
    the last hours, as a publisher's cursor wants them), straight from each row's entries
    rather than pivoted into columns per series and back: a few numpy calls per meter, not a
    few per series."""
    decoded = [decode_row(row) for row in rows]
    decoded.sort(key=lambda row: row.received_at)  # stable: arrival order within a second
    seconds = [row.received_at for row in decoded]
    first = bisect_left(seconds, received_at)
    kept = decoded[min(first + count, bisect_right(seconds, received_at)) :]
    received = np.array([row.received_at for row in kept], np.int64)
    counts = np.array([len(row.entries) for row in kept], np.int64)
    if not counts.sum():
        return ReadingValues(received, np.zeros(0, np.int64), ValueTable.empty())
    entries = np.concatenate([row.entries for row in kept])
    blobs = None
    if any(row.blobs is not None for row in kept):
        blobs = tuple(b for row in kept for b in (row.blobs or (None,) * len(row.entries)))
    meter_time = np.array([row.meter_time for row in kept], np.int64)
    values = ValueTable(
        entries["series"].astype(np.uint32),
        np.repeat(received, counts),
        np.repeat(meter_time, counts),
        entries["kind"].astype(np.uint8),
        entries["exponent"].astype(np.int8),
        entries["flags"].astype(np.uint8),
        entries["mantissa"].astype(np.int64),
        blobs,
    )
    reading = np.repeat(np.arange(len(kept), dtype=np.int64), counts)
    by_reading = np.lexsort((values.series, reading))  # per reading, series by id
    return ReadingValues(received, reading[by_reading], values.select(by_reading))


def _log_of(pieces: list[MeterColumns], span: TimeRange) -> MeterLog:
    names = ("received_at", "status", "duration_ms", "retries", "status_byte")
    if not pieces:
        return MeterLog(*(np.zeros(0, np.int64) for _ in names), ())
    columns = {name: np.concatenate([getattr(p, name) for p in pieces]) for name in names}
    errors = [e for p in pieces for e in p.errors]
    order = np.argsort(columns["received_at"], kind="stable")
    received = columns["received_at"][order]
    keep = order[(received >= span.since) & (received < span.until)]
    return MeterLog(
        *(columns[name][keep] for name in names), tuple(errors[i] for i in keep.tolist())
    )


# -- latest values ---------------------------------------------------------------------------

NEWEST_SCAN_SLOTS = 8  # the backward scan for each meter's newest row covers two hours


def _newest_rows(txn: lmdb.Transaction, env: StoreEnv, wanted: set[int]) -> dict[int, bytes]:
    """The newest row of each wanted meter in the last slots, by one backward scan."""
    cursor = txn.cursor(db=env.db.readings)
    newest: dict[int, bytes] = {}
    if not cursor.last():
        return newest
    stop_slot = unpack_reading_key(cursor.key())[0] - NEWEST_SCAN_SLOTS
    while len(newest) < len(wanted):
        slot, meter_id, _ = unpack_reading_key(cursor.key())
        if slot < stop_slot:
            break
        if meter_id in wanted and meter_id not in newest:
            newest[meter_id] = cursor.value()
        if not cursor.prev():
            break
    return newest


def _older_sources(
    txn: lmdb.Transaction, env: StoreEnv, meter_id: int
) -> tuple[list[bytes], list[bytes]]:
    """A meter's rows not yet compacted, and its blocks newest first (within the lookback)."""
    rows = meter_rows(txn, env.db.readings, meter_id, TimeRange())
    days = meter_days(txn, env, meter_id)
    blocks = []
    if days is not None:
        first = max(days[0], days[1] - LATEST_LOOKBACK_DAYS)
        for day in range(days[1], first - 1, -1):
            data = txn.get(block_key(day, meter_id), db=env.db.blocks)
            if data is not None:
                blocks.append(data)
    return rows, blocks


def _rows_table(raw_rows: list[bytes]) -> ValueTable:
    """All values of reading rows as one table (any series, any order).

    Reads the fixed-width entries straight out of the row bytes: one ``frombuffer`` for all
    rows instead of a decoded object per row (this is the latest-values hot path).
    """
    parts, counts, received, meter_time = [], [], [], []
    blobs: list[bytes | None] | None = None
    for raw in raw_rows:
        head = HEADER.unpack_from(raw)
        count = head[6]
        if not count:
            continue
        start = HEADER.size + head[7]
        end = start + count * ENTRY_DTYPE.itemsize
        parts.append(raw[start:end])
        counts.append(count)
        received.append(head[0])
        meter_time.append(head[1])
        if len(raw) > end or blobs is not None:
            if blobs is None:
                blobs = [None] * (sum(counts) - count)
            row_blobs = decode_row(raw).blobs
            blobs.extend(row_blobs if row_blobs is not None else [None] * count)
    if not parts:
        return ValueTable.empty()
    return _entries_table(
        np.frombuffer(b"".join(parts), ENTRY_DTYPE),
        np.repeat(np.array(received, np.int64), counts),
        np.repeat(np.array(meter_time, np.int64), counts),
        None if blobs is None else tuple(blobs),
    )


def _block_tails(columns: MeterColumns) -> ValueTable:
    """The last value of each series in a block (blocks are in time order)."""
    tables = []
    for series_id, column in columns.series.items():
        if len(column.rows):
            row = column.rows[-1:]
            last = SeriesColumn(
                row,
                *(getattr(column, name)[-1:] for name in SeriesColumn.VALUE_COLUMNS),
                None if column.blobs is None else column.blobs[-1:],
            )
            tables.append(
                _series_table(series_id, columns.received_at[row], columns.meter_time[row], last)
            )
    return _concat(tables)


def _newest_per_series(tables: list[ValueTable]) -> ValueTable:
    """Per series, the row with the latest reception time (the later one on ties)."""
    table = _concat(tables)
    if not len(table):
        return table
    order = np.lexsort((np.arange(len(table)), table.received_at, table.series))
    series = table.series[order]
    return table.select(order[np.append(series[1:] != series[:-1], True)])


def time_bounds(env: StoreEnv) -> tuple[int | None, int | None]:
    """Reception times of the oldest and the newest stored reading."""
    with env.read() as txn:
        edge_blocks = _edge_values(txn.cursor(db=env.db.blocks), lambda k: unpack_block_key(k)[0])
        edge_rows = _edge_values(txn.cursor(db=env.db.readings), lambda k: unpack_reading_key(k)[0])
    times: list[int] = []
    for data in edge_blocks:
        received = block_times(data)
        if len(received):
            times += (int(received.min()), int(received.max()))
    times += [HEADER.unpack_from(raw)[0] for raw in edge_rows]
    return (min(times), max(times)) if times else (None, None)


def _edge_values(cursor: lmdb.Cursor, group: Callable[[bytes], int]) -> list[bytes]:
    """Values of the first and the last key group (a day of blocks, a slot of rows)."""
    values = []
    for position, step in ((cursor.first, cursor.next), (cursor.last, cursor.prev)):
        found = position()
        if not found:
            continue
        first = group(cursor.key())
        while found and group(cursor.key()) == first:
            values.append(cursor.value())
            found = step()
    return values
