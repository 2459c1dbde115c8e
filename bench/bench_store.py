"""Store benchmark: ingest, a year of one series, latest values, density, flash writes.

Synthetic 512-meter data (``bench/store_data.py``): ten values per reading, 15-minute cycles.

1. ingest: ``--days`` days of all meters through the ``StoreWriter`` (one durable commit per
   cycle of 512 readings, as the scheduler will do); values/s and the bytes the process wrote
   (``/proc/self/io``) per reading: the flash wear;
2. compaction of those days; bytes per value = pages of the ``blocks`` table × page size ÷
   values, which includes B-tree and page-fill overhead. Days compact independently, so a few
   days of 512 meters are a fair sample for ten years; the projection multiplies by
   512 × 96 × 365.25 × 10 × 10 values and adds the bounded parts (rows not yet compacted, the
   system log cap, raw telegrams for their retention);
3. a full year (35 040 points) of one series read into numpy arrays, from the compacted store;
4. the latest value of every series of the 512 meters.

No peer implements this, so the table gives each figure as a ratio to its goal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import trio

from bench.store_data import make_fleet
from mbusgw.gateway.store import Store, StoreWriter, compact_now

START = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY = 86_400
GiB = 1 << 30
TEN_YEARS_VALUES = 512 * 96 * 365.25 * 10 * 10
RAW_DAYS = 92
SYSLOG_CAP = 100_000_000
SMOKE_ARGV = ["--meters=4", "--days=1", "--repeat=1", "--year-days=2"]
GOALS = {
    "ingest_values_per_s": 200_000,
    "year_series_ms": 20.0,
    "latest_512_meters_ms": 10.0,
    "ten_year_gib": 4.0,
    "flash_bytes_per_reading": 256,  # research/limits.md goal 10 (reported, not an issue goal)
    "flash_values_only_bytes_per_reading": 256,
}


class FixedClock:
    """The benchmark moves time by hand: reading cycles are generated, not waited for."""

    def __init__(self, time: float) -> None:
        self.time = time

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time, dt.UTC)


def _io() -> dict[str, int]:
    with open("/proc/self/io") as file:
        return {k: int(v) for k, v in (line.split(":") for line in file)}


def _timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


async def _ingest(
    store: Store, fleet, clock: FixedClock, cycles: int, frames: bool
) -> tuple[float, float, int]:
    """Seconds spent storing, seconds spent building readings, values stored."""
    writer = StoreWriter(store)
    storing = building = 0.0
    values = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for c in range(cycles):
            started = time.perf_counter()
            readings = fleet.cycle(c, frames=frames)
            built = time.perf_counter()
            clock.time = int(fleet.received[:, c].max()) + 1
            receipt = await writer.put_readings(readings)
            storing += time.perf_counter() - built
            building += built - started
            values += receipt.values
        writer.close()
    return storing, building, values


def _table_bytes(store: Store, name: str) -> int:
    return store.stats().tables[name].bytes


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_store")
    parser.add_argument("--meters", type=int, default=512)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--year-days", type=int, default=365, help="days of the long series")
    args, _ = parser.parse_known_args([a for a in argv if a.startswith("--")])
    workdir = Path(tempfile.mkdtemp(prefix="mbusgw-bench-store-"))
    try:
        return _run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: Path) -> dict:
    results: dict[str, float] = {}
    cycles = 96 * args.days
    started = time.perf_counter()
    fleet = make_fleet(args.meters, cycles, START)
    results["generate_s"] = time.perf_counter() - started
    clock = FixedClock(START)
    store = Store.open(workdir / "store.mdb", clock=clock, map_size=1 * GiB)

    # 1. ingest through the writer, one durable commit per cycle, raw telegrams included
    before = _io()
    storing, building, values = trio.run(_ingest, store, fleet, clock, cycles, True)
    after = _io()
    readings = args.meters * cycles
    results["ingest_values_per_s"] = values / storing
    results["ingest_with_building_values_per_s"] = values / (storing + building)
    results["flash_bytes_per_reading"] = (after["wchar"] - before["wchar"]) / readings
    results["device_bytes_per_reading"] = (after["write_bytes"] - before["write_bytes"]) / readings
    row_bytes = _table_bytes(store, "readings") / readings
    raw_bytes = _table_bytes(store, "raw") / readings
    # the same for values only (no raw telegrams kept), one day into a store of its own
    plain = Store.open(workdir / "plain.mdb", clock=FixedClock(START), map_size=1 * GiB)
    before = _io()
    trio.run(_ingest, plain, fleet, plain.clock, 96, False)
    after = _io()
    plain.close()
    results["flash_values_only_bytes_per_reading"] = (after["wchar"] - before["wchar"]) / (
        args.meters * 96
    )

    # 2. compaction and density
    clock.time = START + args.days * DAY + 2 * 3600
    started = time.perf_counter()
    blocks = compact_now(store)
    results["compaction_ms_per_meter_day"] = (time.perf_counter() - started) * 1000 / blocks
    stats = store.stats()
    assert stats.rows_waiting == 0 and stats.values == values
    with store.env.read() as txn:
        payload = sum(len(v) for _, v in txn.cursor(db=store.env.db.blocks))
    block_pages = _table_bytes(store, "blocks")
    per_value = block_pages / values
    results["block_payload_bytes_per_value"] = payload / values
    results["bytes_per_value"] = per_value
    hot = args.meters * 100 * row_bytes  # a day and the grace hour not yet compacted
    raw = args.meters * 96 * RAW_DAYS * raw_bytes
    results["raw_telegram_bytes"] = raw_bytes
    results["ten_year_values_gib"] = per_value * TEN_YEARS_VALUES / GiB
    results["ten_year_gib"] = (per_value * TEN_YEARS_VALUES + hot + SYSLOG_CAP) / GiB
    results["ten_year_with_raw_gib"] = results["ten_year_gib"] + raw / GiB

    # 3. the latest value of every series, from blocks only and with recent rows
    sids = len(store.series())
    results["latest_from_blocks_ms"] = _timed(store.latest, 3)[0] * 1000
    tail = make_fleet(args.meters, 4, START + args.days * DAY)
    store.put_readings([r for c in range(4) for r in tail.cycle(c)])
    latest_s, latest = _timed(store.latest, args.repeat)
    assert len(latest) == sids
    results["latest_512_meters_ms"] = latest_s * 1000

    # 4. a year of one series (one heat meter stored and compacted a year before)
    days = args.year_days
    year = make_fleet(1, 96 * days, START - (days + 1) * DAY, seed=7)
    clock.time = START - DAY
    for day in range(days):
        store.put_readings([r for c in range(96 * day, 96 * (day + 1)) for r in year.cycle(c)])
    compact_now(store)
    series = store.series(year.names[0])[0]
    since, until = START - (days + 1) * DAY, START - DAY
    year_s, table = _timed(lambda: store.values(series.id, since, until), args.repeat)
    assert len(table) == 96 * days, len(table)
    results["year_series_ms"] = year_s * 1000
    results["year_series_as_float_ms"] = (
        _timed(lambda: store.values(series.id, since, until).as_float(), args.repeat)[0] * 1000
    )
    assert np.isfinite(table.as_float()).all()
    assert store.problems() == []
    store.close()
    _print(results, args)
    return results


def _print(results: dict[str, float], args: argparse.Namespace) -> None:
    rows = [
        ("ingest (values/s)", "ingest_values_per_s", ">=", "{:,.0f}"),
        ("one series, full year (ms)", "year_series_ms", "<=", "{:.2f}"),
        ("latest of 512 meters (ms)", "latest_512_meters_ms", "<=", "{:.2f}"),
        ("10 years, everything (GiB)", "ten_year_gib", "<=", "{:.2f}"),
        ("written per reading (B)*", "flash_bytes_per_reading", "<=", "{:.0f}"),
        ("  without raw telegrams (B)*", "flash_values_only_bytes_per_reading", "<=", "{:.0f}"),
    ]
    print(f"{args.meters} meters, {args.days} days, 10 values per reading")
    print(f"{'measure':<30} {'ours':>12} {'goal':>12} {'ours/goal':>10}")
    for label, key, sense, fmt in rows:
        value, goal = results[key], GOALS[key]
        verdict = "ok" if (value >= goal if sense == ">=" else value <= goal) else "MISSED"
        print(
            f"{label:<30} {fmt.format(value):>12} {sense + ' ' + str(goal):>12} "
            f"{value / goal:>10.3f}  {verdict}"
        )
    print("* reported as the issue asks; the goal is research/limits.md's suggestion 10")
    print()
    for key in (
        "ingest_with_building_values_per_s",
        "device_bytes_per_reading",
        "compaction_ms_per_meter_day",
        "block_payload_bytes_per_value",
        "bytes_per_value",
        "ten_year_values_gib",
        "raw_telegram_bytes",
        "ten_year_with_raw_gib",
        "latest_from_blocks_ms",
        "year_series_as_float_ms",
        "generate_s",
    ):
        print(f"  {key:<36} {results[key]:>12,.3f}")
