"""A full consistency check of a store: every record decodes and every cross-reference holds.

Used after crashes (tests), before a restore replaces the live store, and by
``mbusgw store check``. Reads in one snapshot: on a large store run it in a thread.
"""

from __future__ import annotations

import json

import lmdb

from mbusgw.gateway.errors import StoreCorrupt
from mbusgw.gateway.store.blocks import decode_block
from mbusgw.gateway.store.env import COUNT_READINGS, COUNT_VALUES, StoreEnv, get_u64
from mbusgw.gateway.store.ingest import NEXT_SEQ
from mbusgw.gateway.store.keys import (
    day_of,
    slot_of,
    unpack_block_key,
    unpack_id_key,
    unpack_log_key,
    unpack_reading_key,
    unpack_series_index_key,
)
from mbusgw.gateway.store.raw import decode_raw
from mbusgw.gateway.store.rows import decode_row

_PROBLEM_LIMIT = 50


def find_problems(env: StoreEnv) -> list[str]:
    """Everything wrong with the store (empty when it is consistent)."""
    problems: list[str] = []
    with env.read() as txn:
        _check(txn, env, problems)
    return problems[:_PROBLEM_LIMIT]


def verify(env: StoreEnv) -> None:
    problems = find_problems(env)
    if problems:
        raise StoreCorrupt("store check failed: " + "; ".join(problems))


def _check(txn: lmdb.Transaction, env: StoreEnv, problems: list[str]) -> None:
    db = env.db
    meters: dict[int, dict] = {}
    for key, raw in txn.cursor(db=db.meters):
        meters[unpack_id_key(key)] = json.loads(raw)
    names = {record["name"]: meter_id for meter_id, record in meters.items()}
    for key, raw in txn.cursor(db=db.meter_index):
        if names.get(key.decode()) != int.from_bytes(raw, "little"):
            problems.append(f"meter index entry {key!r} does not match the meters table")
    if len(names) != txn.stat(db.meter_index)["entries"]:
        problems.append("meter index and meters table differ in size")
    series_meter: dict[int, int] = {}
    for key, raw in txn.cursor(db=db.series):
        record = json.loads(raw)
        if record["meter"] not in names:
            problems.append(f"series {unpack_id_key(key)} belongs to an unknown meter")
            continue
        series_meter[unpack_id_key(key)] = names[record["meter"]]
    for key, raw in txn.cursor(db=db.series_index):
        meter_id, _ = unpack_series_index_key(key)
        if series_meter.get(int.from_bytes(raw, "little")) != meter_id:
            problems.append(f"series index entry {key.hex()} does not match the series table")

    next_seq = get_u64(txn, db.meta, NEXT_SEQ)
    readings = values = 0
    for key, raw in txn.cursor(db=db.readings):
        slot, meter_id, seq = unpack_reading_key(key)
        try:
            row = decode_row(raw)
        except (ValueError, UnicodeDecodeError) as error:
            problems.append(f"reading {slot}/{meter_id}/{seq} does not decode: {error}")
            continue
        if meter_id not in meters or seq >= next_seq or slot_of(row.received_at) != slot:
            problems.append(f"reading {slot}/{meter_id}/{seq} has a bad key")
        for series_id in set(row.entries["series"].tolist()):
            if series_meter.get(series_id) != meter_id:
                problems.append(f"reading {slot}/{meter_id}/{seq} has a foreign series {series_id}")
        readings += 1
        values += len(row.entries)

    days_seen: dict[int, list[int]] = {}
    for key, raw in txn.cursor(db=db.blocks):
        day, meter_id = unpack_block_key(key)
        try:
            columns = decode_block(raw)
        except StoreCorrupt as error:
            problems.append(f"block {day}/{meter_id} does not decode: {error}")
            continue
        if meter_id not in meters or (day_of(columns.received_at) != day).any():
            problems.append(f"block {day}/{meter_id} has a bad key")
        for series_id in columns.series:
            if series_meter.get(series_id) != meter_id:
                problems.append(f"block {day}/{meter_id} has a foreign series {series_id}")
        days_seen.setdefault(meter_id, []).append(day)
        readings += len(columns)
        values += columns.value_count()
    for meter_id, days in days_seen.items():
        record = meters.get(meter_id, {})
        first, last = record.get("first_day"), record.get("last_day")
        if first is None or last is None or min(days) < first or max(days) > last:
            problems.append(
                f"meter {meter_id} records days {first}..{last}, blocks span "
                f"{min(days)}..{max(days)}"
            )

    for name, expected in ((COUNT_READINGS, readings), (COUNT_VALUES, values)):
        if get_u64(txn, db.meta, name) != expected:
            problems.append(f"{name.decode()} is {get_u64(txn, db.meta, name)}, counted {expected}")

    for key, raw in txn.cursor(db=db.raw):
        try:
            received_at, _, _ = decode_raw(raw)
        except (ValueError, IndexError) as error:
            problems.append(f"raw telegram {key.hex()} does not decode: {error}")
            continue
        if slot_of(received_at) != unpack_reading_key(key)[0]:
            problems.append(f"raw telegram {key.hex()} has a bad key")

    log_bytes = 0
    for key, raw in txn.cursor(db=db.syslog):
        unpack_log_key(key)
        log_bytes += len(key) + len(raw)
    if get_u64(txn, db.meta, b"syslog_bytes") != log_bytes:
        problems.append("system log byte count does not match its entries")
