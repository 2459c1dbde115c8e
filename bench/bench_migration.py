"""Upgrade benchmark: a store of format 1 holding a year of 512 meters, opened by this release.

Opening migrates it in place (docs/store.md, "Store format"): a compacted copy kept beside it
with its secrets sealed, then every step in one transaction. The steps' work grows with the raw
telegrams (each record is rewritten with its header identity: one decode of its first frame)
and the copy with the whole file, so the store holds what a year leaves behind with the default
settings: a year of compacted day blocks and the last ``raw_days`` (92) days of raw telegrams.

How the year is made, in minutes rather than hours: one day of the synthetic fleet
(``bench/store_data.py``) goes through the store and is compacted; its day blocks are copied to
the other days (a migration copies blocks as bytes and decodes none of them), and the raw
telegrams are written in the format-1 layout (frames only), one real wired frame of the
simulator's meters per reading. A few secrets are stored in clear, as format 1 kept them.

Reported: the migration's seconds (the goal: at most 60 s), the file and copy sizes, and the
check that nothing is lost: table counts, the stored counters and a sample of values (whole days
of series across the year) read before and after.
"""

from __future__ import annotations

import argparse
import json
import struct
import tempfile
import time
from importlib.resources import files
from pathlib import Path

from bench.bench_store import DAY, START, FixedClock, GiB
from bench.store_data import make_fleet
from mbusgw.gateway.store import Store, compact_now
from mbusgw.gateway.store.env import COUNT_READINGS, COUNT_VALUES, get_u64, put_u64
from mbusgw.gateway.store.keys import block_key, reading_key, unpack_block_key, unpack_id_key

SMOKE_ARGV = ["--meters=4", "--days=3", "--raw-days=2"]
GOAL_S = 60.0
SAMPLE_SERIES = 24
CLEAR_KEY = {"key": "000102030405060708090a0b0c0d0e0f", "note": "stored in clear by format 1"}


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_migration")
    parser.add_argument("--meters", type=int, default=512)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--raw-days", type=int, default=92)
    args, _ = parser.parse_known_args([a for a in argv if a.startswith("--")])
    with tempfile.TemporaryDirectory(prefix="mbusgw-bench-migration-") as workdir:
        return _run(args, Path(workdir))


def _run(args: argparse.Namespace, workdir: Path) -> dict:
    path = workdir / "store.mdb"
    started = time.perf_counter()
    before = _make_year(path, args)
    made_s = time.perf_counter() - started

    started = time.perf_counter()
    store = Store.open(path, clock=FixedClock(START + args.days * DAY))
    migrate_s = time.perf_counter() - started
    try:
        after = _contents(store)
        assert store.env.migrated is not None and store.env.migrated[0] == 1
        raw = store.stats().raw_telegrams
    finally:
        store.close()
    lost = [name for name in before if before[name] != after[name]]
    assert not lost, f"the migration changed {lost}"
    copy = path.with_name("store.mdb.format-1.bak")
    assert CLEAR_KEY["key"].encode() not in copy.read_bytes()
    results = {
        "migrate_s": migrate_s,
        "make_store_s": made_s,
        "store_mib": path.stat().st_size / (1 << 20),
        "kept_copy_mib": copy.stat().st_size / (1 << 20),
        "raw_telegrams": raw,
        "values": before["counters"][1],
        "sampled_values": sum(len(v) for v in before["sample"]),
    }
    _print(results, args)
    return results


def _make_year(path: Path, args: argparse.Namespace) -> dict:
    """A format-1 store of ``args.days`` days; returns what must survive the migration."""
    clock = FixedClock(START)
    store = Store.open(path, clock=clock, map_size=4 * GiB)
    fleet = make_fleet(args.meters, 96, START)
    for cycle in range(96):
        clock.time = int(fleet.received[:, cycle].max()) + 1
        store.put_readings(fleet.cycle(cycle))
    clock.time = START + DAY + 2 * 3600
    compact_now(store)
    env, db = store.env, store.env.db
    first_day = START // DAY
    with env.write() as txn:
        day_one = [(unpack_block_key(k)[1], v) for k, v in txn.cursor(db=db.blocks)]
    for first in range(1, args.days, 30):  # a month per transaction
        with env.write() as txn:
            for day in range(first, min(first + 30, args.days)):
                for meter, block in day_one:
                    txn.put(block_key(first_day + day, meter), block, db=db.blocks)
    frames = _wired_frames()
    with env.write() as txn:
        for key, value in list(txn.cursor(db=db.meters)):
            meter = json.loads(value)
            meter["last_day"] = first_day + args.days - 1
            txn.put(key, json.dumps(meter).encode(), db=db.meters)
        for name in (COUNT_READINGS, COUNT_VALUES):
            put_u64(txn, db.meta, name, get_u64(txn, db.meta, name) * args.days)
        txn.drop(db.raw, delete=False)
    _write_raw_v1(store, args, frames)
    with env.write() as txn:
        txn.put(b"bench-key", json.dumps(CLEAR_KEY).encode(), db=db.keys)
    before = _contents(store)
    with env.write() as txn:
        txn.put(b"schema", struct.pack("<I", 1), db=db.meta)
    store.close()
    return before


def _write_raw_v1(store: Store, args: argparse.Namespace, frames: list[bytes]) -> None:
    """The last ``raw_days`` days of raw telegrams in the format-1 layout: ``<q received_at``
    and the frames, each after its ``<H`` length."""
    env, db = store.env, store.env.db
    with env.read() as txn:
        meters = [unpack_id_key(key) for key, _ in txn.cursor(db=db.meters)]
    seq = 1 << 40  # past every sequence number the day used
    last = START + (args.days - 1) * DAY
    for day in range(args.raw_days):
        with env.write() as txn:
            for cycle in range(96):
                received = last - day * DAY + cycle * 900 + 7
                for meter in meters:
                    frame = frames[meter % len(frames)]
                    value = struct.pack("<qH", received, len(frame)) + frame
                    txn.put(reading_key(received // 900, meter, seq), value, db=db.raw)
                    seq += 1


def _wired_frames() -> list[bytes]:
    folder = files("mbusgw.gateway.simulator").joinpath("frames")
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".hex"):
            frame = bytes.fromhex("".join(entry.read_text().split()))
            if frame[:1] == b"\x68":
                found.append(frame)
    return found


def _contents(store: Store) -> dict:
    """Counts of every table, the stored counters, and the first day of sampled series (the one
    day whose blocks were made by the store itself)."""
    env = store.env
    with env.read() as txn:
        counts = {name: txn.stat(handle)["entries"] for name, handle in env.db.all().items()}
        counters = tuple(get_u64(txn, env.db.meta, key) for key in (COUNT_READINGS, COUNT_VALUES))
    for changing in ("meta", "syslog"):  # the migration writes its note to the system log
        counts.pop(changing)
    series = store.series()
    sample = [
        [str(value) for value in store.values(s.id, START, START + DAY).as_float()]
        for s in series[:: max(1, len(series) // SAMPLE_SERIES)]
    ]
    return {"counts": counts, "counters": counters, "sample": sample}


def _print(results: dict, args: argparse.Namespace) -> None:
    ratio = results["migrate_s"] / GOAL_S
    print(
        f"format 1 → this format, {args.meters} meters × {args.days} days "
        f"({results['values']:,} values, {results['raw_telegrams']:,} raw telegrams, "
        f"{results['store_mib']:.0f} MiB; copy kept {results['kept_copy_mib']:.0f} MiB)"
    )
    print(f"  migration {results['migrate_s']:.1f} s (goal <= {GOAL_S:.0f} s: {ratio:.2f} of it)")
    print(f"  nothing lost: counts, counters and {results['sampled_values']} sampled values")
    print(f"  (making the store took {results['make_store_s']:.0f} s)")
