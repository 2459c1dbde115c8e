"""The system log on disk: writing entries, the size and age caps, filtering, CSV export.

Keys are ``(time µs, seq)`` so entries sort by time and the oldest are at the front, where the
caps cut. The size cap counts the bytes of keys and values (kept in ``meta``), so it is
enforced exactly and cheaply on every write, not by walking the table.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from mbusgw.gateway.cells import CsvWriter
from mbusgw.gateway.store.context import WriteContext
from mbusgw.gateway.store.env import StoreEnv, delete_front, get_u64, put_u64
from mbusgw.gateway.store.keys import log_key, unpack_log_key
from mbusgw.gateway.store.syslog import LogEntry, LogLevel

_HEAD = struct.Struct("<bB")
_BYTES = b"syslog_bytes"
_SEQ = b"syslog_seq"
_READ_CHUNK = 2000  # entries per read transaction: readers stay short even for a full export
_MAX_DELETES = 50_000  # per transaction; the retention service finishes what is left


def _encode(entry: LogEntry) -> bytes:
    origin = entry.origin.encode()[:255]
    return _HEAD.pack(entry.level, len(origin)) + origin + entry.text.encode()


def _decode(key: bytes, value: bytes) -> LogEntry:
    time_us, _ = unpack_log_key(key)
    level, origin_len = _HEAD.unpack_from(value)
    start = _HEAD.size
    origin = value[start : start + origin_len].decode(errors="replace")
    text = value[start + origin_len :].decode(errors="replace")
    return LogEntry(time_us / 1e6, level, origin, text)


def write_entries(ctx: WriteContext, entries: list[LogEntry]) -> None:
    """Append entries, then cut the log back to its caps."""
    if not entries:
        return
    db, meta = ctx.db.syslog, ctx.db.meta
    seq = get_u64(ctx.txn, meta, _SEQ)
    size = get_u64(ctx.txn, meta, _BYTES)
    for entry in entries:
        key = log_key(max(0, int(entry.time * 1e6)), seq & 0xFFFF_FFFF)
        value = _encode(entry)
        if ctx.txn.put(key, value, db=db, overwrite=False):
            size += len(key) + len(value)
        seq += 1
    put_u64(ctx.txn, meta, _SEQ, seq)
    put_u64(ctx.txn, meta, _BYTES, size)
    enforce_caps(ctx)


def enforce_caps(ctx: WriteContext) -> int:
    """Delete the oldest entries over the size cap or older than the age cap; returns how many."""
    max_bytes = ctx.settings.store.log_max_bytes
    max_days = ctx.settings.store.log_max_days
    oldest_kept = log_key(max(0, int((ctx.now - max_days * 86_400) * 1e6)), 0)
    return _delete_front(ctx, lambda key, size: size > max_bytes or key < oldest_kept)


def delete_oldest_entries(ctx: WriteContext, count: int) -> int:
    """Delete the ``count`` oldest entries (pruning when the store is full)."""
    removed = 0

    def more(key: bytes, size: int) -> bool:
        nonlocal removed
        removed += 1
        return removed <= count

    return _delete_front(ctx, more)


def _delete_front(ctx: WriteContext, more: Callable[[bytes, int], bool]) -> int:
    """Delete from the oldest entry on while ``more(key, stored bytes)``; keeps the byte count."""
    meta = ctx.db.meta
    size = get_u64(ctx.txn, meta, _BYTES)

    def keep_going(key: bytes, value: bytes) -> bool:
        nonlocal size
        if not more(key, size):
            return False
        size -= len(key) + len(value)
        return True

    removed = delete_front(ctx.txn.cursor(db=ctx.db.syslog), keep_going, _MAX_DELETES)
    if removed:
        put_u64(ctx.txn, meta, _BYTES, max(size, 0))
    return removed


def stored_bytes(env: StoreEnv) -> int:
    with env.read() as txn:
        return get_u64(txn, env.db.meta, _BYTES)


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Entries with ``since <= time < until``, level in range, and from ``origin`` if given."""

    since: float | None = None
    until: float | None = None
    min_level: int | None = None
    max_level: int | None = None
    origin: str | None = None

    def accepts(self, entry: LogEntry) -> bool:
        if self.min_level is not None and entry.level < self.min_level:
            return False
        if self.max_level is not None and entry.level > self.max_level:
            return False
        return self.origin is None or entry.origin == self.origin


EVERYTHING = LogFilter()


def iter_entries(
    env: StoreEnv, where: LogFilter = EVERYTHING, *, newest_first: bool = False
) -> Iterator[LogEntry]:
    """Matching entries in time order (or newest first), read in short transactions."""
    low = log_key(max(0, int(where.since * 1e6)), 0) if where.since is not None else b""
    high = log_key(max(0, int(where.until * 1e6)), 0) if where.until is not None else None
    resume: bytes | None = None
    while True:
        chunk = _read_chunk(env, low, high, resume, newest_first)
        for key, value in chunk:
            entry = _decode(key, value)
            if where.accepts(entry):
                yield entry
        if len(chunk) < _READ_CHUNK:
            return
        resume = chunk[-1][0]


def _read_chunk(
    env: StoreEnv, low: bytes, high: bytes | None, resume: bytes | None, newest_first: bool
) -> list[tuple[bytes, bytes]]:
    """Up to ``_READ_CHUNK`` entries in ``[low, high)`` after ``resume`` (exclusive)."""
    chunk: list[tuple[bytes, bytes]] = []
    with env.read() as txn:
        cursor = txn.cursor(db=env.db.syslog)
        if newest_first:
            bound = resume if resume is not None else high  # exclusive upper bound
            if bound is None:
                found = cursor.last()
            elif cursor.set_range(bound):  # the first key >= bound: step back once
                found = cursor.prev()
            else:  # every key is below the bound
                found = cursor.last()
            while found and len(chunk) < _READ_CHUNK and cursor.key() >= low:
                chunk.append((cursor.key(), cursor.value()))
                found = cursor.prev()
        else:
            start = resume + b"\x00" if resume is not None else low
            found = cursor.set_range(start) if start else cursor.first()
            while found and len(chunk) < _READ_CHUNK:
                if high is not None and cursor.key() >= high:
                    break
                chunk.append((cursor.key(), cursor.value()))
                found = cursor.next()
    return chunk


def query(env: StoreEnv, where: LogFilter = EVERYTHING, limit: int | None = None) -> list[LogEntry]:
    """Matching entries oldest first; with ``limit``, only the newest ``limit`` of them."""
    if limit is None:
        return list(iter_entries(env, where))
    newest = []
    for entry in iter_entries(env, where, newest_first=True):
        if len(newest) >= limit:
            break
        newest.append(entry)
    return newest[::-1]


CSV_COLUMNS = ("time", "level", "level_name", "origin", "text")


def export_csv(env: StoreEnv, out: TextIO, where: LogFilter = EVERYTHING) -> int:
    """Write matching entries as CSV (UTC ISO 8601 times); returns the row count."""
    writer = CsvWriter(out)
    writer.writerow(CSV_COLUMNS)
    rows = 0
    for entry in iter_entries(env, where):
        when = dt.datetime.fromtimestamp(entry.time, dt.UTC).isoformat(timespec="milliseconds")
        try:
            name = LogLevel(entry.level).name.lower()
        except ValueError:
            name = str(entry.level)
        writer.writerow((when, entry.level, name, entry.origin, entry.text))
        rows += 1
    return rows
