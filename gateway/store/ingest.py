"""Writing readings as they arrive: one row per reading, keyed ``(slot, meter, seq)``.

Runs inside the writer's transaction. Rows are sorted by key and appended when they land after
the last key (the usual case: a reading cycle fills a fresh slot), so pages are written full and
once per commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lmdb
import numpy as np

from mbusgw.gateway.store.context import WriteContext
from mbusgw.gateway.store.env import add_counts, get_u64, put_u64
from mbusgw.gateway.store.keys import reading_key, slot_of
from mbusgw.gateway.store.model import (
    NO_STATUS_BYTE,
    STATUS_BYTE_ERROR_BITS,
    ReadingStatus,
    StatusByteMode,
    StoredReading,
)
from mbusgw.gateway.store.raw import encode_raw
from mbusgw.gateway.store.rows import accept_readings, encode_row
from mbusgw.gateway.store.syslog import SystemLog

NEXT_SEQ = b"next_seq"
_OCCURRENCE_MARK = b"\xff"  # cannot end a DIF..VIFE chain: marks a repeated record identity


@dataclass(frozen=True, slots=True)
class Receipt:
    """Readings that reached the disk in one durable commit (``seq`` numbers are consecutive)."""

    first_seq: int
    readings: int
    values: int
    refused: tuple[tuple[str, str], ...] = ()  # (meter, why) of each reading not stored


def admit(
    readings: Sequence[StoredReading], log: SystemLog
) -> tuple[list[StoredReading], tuple[tuple[str, str], ...]]:
    """The readings of a batch the store can take; each refused one is written to the system
    log under its meter with the reason, and returned as ``(meter, why)``."""
    good, refused = accept_readings(readings)
    notes = tuple((str(reading.meter), str(error)) for reading, error in refused)
    for meter, why in notes:
        log.error(meter, f"reading not stored: {why}")
    return good, notes


def write_readings(ctx: WriteContext, readings: Sequence[StoredReading]) -> Receipt:
    txn, db = ctx.txn, ctx.db
    first = seq = get_u64(txn, db.meta, NEXT_SEQ)
    mode = StatusByteMode(ctx.settings.log.status_byte)
    now = int(ctx.now)
    rows: list[tuple[bytes, bytes]] = []
    raws: list[tuple[bytes, bytes]] = []
    values = 0
    for reading in readings:
        meter_id = ctx.catalog.meter_id(reading.meter, now)
        ids = _series_ids(ctx, meter_id, reading)
        key = reading_key(slot_of(reading.received_at), meter_id, seq)
        rows.append(
            (key, encode_row(reading, ids, _logged_status_byte(ctx, meter_id, reading, mode)))
        )
        if reading.frames:
            raws.append((key, encode_raw(reading.received_at, reading.frames, reading.header)))
        seq += 1
        values += len(ids)
    put_sorted(txn, db.readings, rows)
    put_sorted(txn, db.raw, raws)
    put_u64(txn, db.meta, NEXT_SEQ, seq)
    add_counts(txn, db, len(readings), values)
    return Receipt(first, len(readings), values)


def _series_ids(ctx: WriteContext, meter_id: int, reading: StoredReading) -> np.ndarray:
    specs = reading.series
    signatures = [spec.signature for spec in specs]
    if len(set(signatures)) != len(signatures):
        # the same record identity twice in one reading: the k-th repeat is its own series
        seen: dict[bytes, int] = {}
        for i, signature in enumerate(signatures):
            count = seen.get(signature, 0)
            seen[signature] = count + 1
            if count:
                signatures[i] = signature + _OCCURRENCE_MARK + bytes([min(count, 255)])
    series_id = ctx.catalog.series_id
    meter = reading.meter
    return np.array(
        [
            series_id(meter_id, meter, spec, sig)
            for spec, sig in zip(specs, signatures, strict=True)
        ],
        np.uint32,
    )


def _logged_status_byte(
    ctx: WriteContext, meter_id: int, reading: StoredReading, mode: StatusByteMode
) -> int:
    """The status byte as the meter log keeps it under ``mode`` (-1: not logged)."""
    byte = reading.status_byte
    if byte is None or mode is StatusByteMode.NEVER:
        return NO_STATUS_BYTE
    if mode is StatusByteMode.ALWAYS:
        return byte
    if mode is StatusByteMode.ON_ERROR:
        failed = reading.status != ReadingStatus.OK or byte & STATUS_BYTE_ERROR_BITS
        return byte if failed else NO_STATUS_BYTE
    previous = ctx.status_bytes.get(meter_id, ctx.committed_status_bytes.get(meter_id))
    ctx.status_bytes[meter_id] = byte
    return byte if byte != previous else NO_STATUS_BYTE


def put_sorted(txn: lmdb.Transaction, db: lmdb._Database, items: list[tuple[bytes, bytes]]) -> None:
    """Put items in key order, appending (no tree search, full pages) when they all come last."""
    if not items:
        return
    items.sort()
    cursor = txn.cursor(db=db)
    at_end = not cursor.last() or cursor.key() < items[0][0]
    cursor.putmulti(items, append=at_end)
