"""Web and API response times, measured in-process through the ASGI app (no sockets).

Workloads (issue 7 goals):
- ``GET /api/v1/values/latest`` with 512 meters of ten values each (goal ≤ 20 ms);
- one meter's series over a year of 15-minute values (35 040 values) as JSON, exact and as
  floats for graphs (goal ≤ 50 ms);
- the meter list page with 512 meters (goal ≤ 100 ms);
- a meter page with its graph of a year (goal ≤ 150 ms), and that graph alone as SVG (goal
  ≤ 30 ms), also as monthly consumption bars.

The store is real (LMDB in a temporary directory, the year compacted into day blocks as it would
be); the app is ``create_app`` with an API token. Each figure is the median of ``--repeat`` runs
after one warm-up. There is no peer to compare with: the reference device publishes no API
timings.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from bench.store_data import make_fleet
from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.events import EventBus
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.meters import AddressingMode, Meter
from mbusgw.gateway.settings import Settings, StartupConfig
from mbusgw.gateway.store import Store, StoreWriter, compact_now
from mbusgw.gateway.supervisor import Supervisor
from mbusgw.web.app import create_app

YEAR_START = 1_672_531_200  # 2023-01-01T00:00:00Z
SLOT = 900
SMOKE_ARGV = ["--meters=4", "--days=2", "--repeat=1"]
GOALS_MS = {  # issue 19's goals (issue 7's: latest 20 ms, a year of a series 50 ms)
    "values_latest_512": 15.0,
    "series_year_json": 50.0,
    "meter_list_page_512": 100.0,
    "meter_page_year_graph": 150.0,
    "graph_svg_year": 30.0,
}


@dataclass
class FixedClock:
    time: float

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time, UTC)


@dataclass
class BenchGateway:
    """The attributes the web reads, over a store filled by the bench."""

    store: Store
    writer: StoreWriter
    startup: StartupConfig
    clock: WallClock
    meters: list[Meter]
    live: LiveSnapshot = field(default_factory=LiveSnapshot)
    events: EventBus = field(default_factory=EventBus)
    health: dict[str, MeterHealth] = field(default_factory=dict)
    lines: dict[str, Any] = field(default_factory=dict)
    wireless: Any = None  # no receivers
    after_stop: Any = None

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.store.log.log)
        self.started_at = self.clock.now()

    @property
    def settings(self) -> Settings:
        return self.store.settings


def _meter(key: str, index: int) -> Meter:
    return Meter(key, f"Flat {index + 1}", key, 2400, (AddressingMode.SECONDARY,))


async def _fill(store: Store, meters: int, days: int) -> tuple[list[str], str]:
    """A year of one meter's 15-minute readings and the newest cycles of ``meters`` meters."""
    writer = StoreWriter(store)
    cycles = days * 96
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        year = make_fleet(1, cycles, YEAR_START, seed=7)
        readings = [r for c in range(cycles) for r in year.cycle(c, frames=False)]
        for start in range(0, len(readings), 2048):
            await writer.put_readings(readings[start : start + 2048])
        fleet = make_fleet(meters, 4, YEAR_START + cycles * SLOT, seed=3)
        for c in range(4):
            await writer.put_readings(fleet.cycle(c, frames=False))
        writer.close()
    return fleet.names, year.names[0]


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def _measure(app: Any, headers: dict[str, str], url: str, repeat: int) -> tuple[float, int]:
    client = app.test_client()
    samples = []
    size = 0
    for run in range(repeat + 1):
        started = time.perf_counter()
        response = await client.get(url, headers=headers)
        data = await response.get_data()
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {data[:200]!r}")
        if run:
            samples.append(elapsed)
        size = len(data)
    return _median_ms(samples), size


async def _bench(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    clock = FixedClock(YEAR_START)
    store = Store.open(workdir / "store.mdb", clock=clock)
    started = time.perf_counter()
    names, year_meter = await _fill(store, args.meters, args.days)
    clock.time = YEAR_START + (args.days * 96 + 8) * SLOT
    compact_now(store)  # every closed day into its blocks, as the compaction service does
    fill_s = time.perf_counter() - started
    writer = StoreWriter(store)
    results: dict[str, Any] = {"fill_s": round(fill_s, 1)}
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        meters = [_meter(key, i) for i, key in enumerate(names)]  # the year's meter is the first
        gateway = BenchGateway(store, writer, StartupConfig(data_dir=workdir), clock, meters)
        app = create_app(gateway)
        async with app.test_app():
            users = app.extensions["mbusgw"].auth.users
            await users.complete_first_login("admin", "benchmark1", "Bench2024x")
            token = await users.create_token("benchmark1", "bench")
            headers = {"Authorization": f"Bearer {token}"}
            series = store.series(year_meter)
            energy = next(s.id for s in series if s.unit in ("kWh", "Wh", "MWh", "J", "GJ"))
            base = f"/api/v1/meters/{year_meter}/series/{energy}?limit=100000"
            workloads = {
                "values_latest_512": "/api/v1/values/latest",
                "series_year_json": base,
                "series_year_float_json": base + "&float=1",
                "series_year_csv": f"/api/v1/meters/{year_meter}/series/{energy}.csv?limit=100000",
                "meter_list_api_512": "/api/v1/meters",
                "meter_list_page_512": "/meters?passive=1",
                # the meter page drawing a year of the series, and that graph alone (its SVG)
                "meter_page_year_graph": f"/meters/{year_meter}?series={energy}&range=365d",
                "graph_svg_year": f"/meters/{year_meter}/graph.svg?series={energy}&range=365d",
            }
            counts = {"series_values": len(store.values(energy))}
            for name, url in workloads.items():
                ms, size = await _measure(app, headers, url, args.repeat)
                results[f"{name}_ms"] = round(ms, 2)
                results[f"{name}_bytes"] = size
        writer.close()
    store.close()
    results.update(counts)
    return results


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_web")
    parser.add_argument("--meters", type=int, default=512)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=9)
    args, _ = parser.parse_known_args([a for a in argv if a.startswith("--")])
    workdir = Path(tempfile.mkdtemp(prefix="mbusgw-bench-web-"))
    try:
        results = trio.run(_bench, workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"store filled in {results['fill_s']} s; the year series has "
          f"{results['series_values']} values")  # fmt: skip
    print(f"{'workload':<28}{'median ms':>12}{'bytes':>12}{'goal ms':>10}")
    for key, value in results.items():
        if key.endswith("_ms"):
            name = key.removesuffix("_ms")
            goal = GOALS_MS.get(name)
            goal_text = f"{goal:.0f}" if goal else "-"
            print(f"{name:<28}{value:>12.2f}{results[name + '_bytes']:>12}{goal_text:>10}")
    return results
