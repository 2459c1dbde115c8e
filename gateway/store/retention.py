"""Retention: the age limits and caps, pruning by policy when the store is full, and the service.

Deletions run in bounded chunks (``DELETE_CHUNK`` keys per transaction) so that no write
transaction holds up the reading cycle for long; the service repeats until nothing is left.
"""

from __future__ import annotations

import datetime as dt
import json

import lmdb

from mbusgw.gateway.store.blocks import block_value_count
from mbusgw.gateway.store.context import WriteContext
from mbusgw.gateway.store.env import add_counts, delete_front
from mbusgw.gateway.store.keys import (
    DAY_SECONDS,
    SLOT_SECONDS,
    block_key,
    id_key,
    reading_key,
    unpack_block_key,
    unpack_reading_key,
)
from mbusgw.gateway.store.rows import HEADER
from mbusgw.gateway.store.syslog import LogEntry, LogLevel
from mbusgw.gateway.store.syslog_table import delete_oldest_entries, enforce_caps

DELETE_CHUNK = 20_000
SLOTS_PER_DAY = DAY_SECONDS // SLOT_SECONDS
RETENTION_INTERVAL = 600.0


def _day_text(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _first_slot(txn: lmdb.Transaction, db: lmdb._Database) -> int | None:
    cursor = txn.cursor(db=db)
    return unpack_reading_key(cursor.key())[0] if cursor.first() else None


def delete_raw_before(ctx: WriteContext, slot: int) -> int:
    """Delete raw telegrams received before ``slot``; returns how many (at most a chunk)."""
    bound = reading_key(slot, 0, 0)
    return delete_front(ctx.txn.cursor(db=ctx.db.raw), lambda key, _: key < bound, DELETE_CHUNK)


def delete_values_before(ctx: WriteContext, day: int) -> tuple[int, int]:
    """Delete readings (blocks and rows) of days before ``day``; returns (readings, values)."""
    counted = [0, 0]
    touched: set[int] = set()
    block_bound = block_key(day, 0)

    def block(key: bytes, value: bytes) -> bool:
        if key >= block_bound:
            return False
        readings, values = block_value_count(value)
        counted[0] += readings
        counted[1] += values
        touched.add(unpack_block_key(key)[1])
        return True

    row_bound = reading_key(day * SLOTS_PER_DAY, 0, 0)

    def row(key: bytes, value: bytes) -> bool:
        if key >= row_bound:
            return False
        counted[0] += 1
        counted[1] += HEADER.unpack_from(value)[6]
        return True

    removed = delete_front(ctx.txn.cursor(db=ctx.db.blocks), block, DELETE_CHUNK)
    delete_front(ctx.txn.cursor(db=ctx.db.readings), row, DELETE_CHUNK - removed)
    for meter_id in touched:
        _raise_first_day(ctx, meter_id, day)
    add_counts(ctx.txn, ctx.db, -counted[0], -counted[1])
    return counted[0], counted[1]


def _raise_first_day(ctx: WriteContext, meter_id: int, day: int) -> None:
    raw = ctx.txn.get(id_key(meter_id), db=ctx.db.meters)
    if raw is None:
        return
    record = json.loads(raw)
    if record.get("first_day") is not None and record["first_day"] < day:
        record["first_day"] = min(day, record["last_day"] + 1)
        ctx.txn.put(id_key(meter_id), json.dumps(record).encode(), db=ctx.db.meters)


def oldest_value_day(ctx: WriteContext) -> int | None:
    """The oldest day that has values, compacted or not."""
    days = []
    cursor = ctx.txn.cursor(db=ctx.db.blocks)
    if cursor.first():
        days.append(unpack_block_key(cursor.key())[0])
    slot = _first_slot(ctx.txn, ctx.db.readings)
    if slot is not None:
        days.append(slot // SLOTS_PER_DAY)
    return min(days, default=None)


def prune_oldest(ctx: WriteContext) -> str | None:
    """One step of the pruning policy; a description of what went, or None if nothing can."""
    slot = _first_slot(ctx.txn, ctx.db.raw)
    if slot is not None:
        day = slot // SLOTS_PER_DAY
        removed = delete_raw_before(ctx, (day + 1) * SLOTS_PER_DAY)
        return f"removed {removed} raw telegrams of {_day_text(day)}"
    entries = ctx.txn.stat(ctx.db.syslog)["entries"]
    if entries >= 100:
        removed = delete_oldest_entries(ctx, entries // 4)
        return f"removed the {removed} oldest system log entries"
    day = oldest_value_day(ctx)
    if day is None:
        return None
    readings, values = delete_values_before(ctx, day + 1)
    return f"removed {values} values ({readings} readings) of {_day_text(day)}"


def apply_retention(ctx: WriteContext) -> int:
    """Enforce the system log caps and the age limits once; returns how many entries went."""
    removed = enforce_caps(ctx)
    raw_days = ctx.settings.store.raw_days
    if raw_days:
        cutoff = int(ctx.now) - raw_days * DAY_SECONDS
        removed += delete_raw_before(ctx, max(0, cutoff) // SLOT_SECONDS)
    value_days = ctx.settings.store.value_days
    if value_days:
        cutoff_day = (int(ctx.now) - value_days * DAY_SECONDS) // DAY_SECONDS
        readings, values = delete_values_before(ctx, max(0, cutoff_day))
        removed += readings
        if readings:
            ctx.events.append(
                _event(ctx, f"retention removed {values} values older than {_day_text(cutoff_day)}")
            )
    return removed


def _event(ctx: WriteContext, text: str) -> LogEntry:
    return LogEntry(ctx.now, LogLevel.INFO, "store", text)
