"""Report rendering benchmark: 512 meters × 96 readings × 10 values (491 520 values).

Synthetic data from ``bench/store_data.py`` (heat, water and electricity meters, 15-minute
cycles) is stored for two days. The timings render one day (the issue's report size) with the
value templates, as the report service does in its worker thread: selection from the store,
formatting, writing the spooled file. Goals: CSV (x101) <= 2 s, Excel (x112) <= 10 s.

Memory: each template is rendered in a fresh process for one day and for two days (twice the
values); the peak of Python allocations during the render (tracemalloc) and the growth of the
peak resident set (``ru_maxrss``) are reported. "Streamed" means they stay flat when the report
doubles. tracemalloc slows rendering down, so the memory runs are not timed.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.store_data import make_fleet
from mbusgw.gateway.services.reports.context import ReportContext
from mbusgw.gateway.services.reports.conventions import Conventions
from mbusgw.gateway.services.reports.selection import Selection, Window
from mbusgw.gateway.services.reports.templates import render
from mbusgw.gateway.store import Store

START = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY = 86_400
GOALS = {"csv_s": 2.0, "excel_s": 10.0}
SMOKE_ARGV = ["--meters=4", "--repeat=1"]
TEMPLATES = {"csv": 1101, "readings_csv": 1102, "excel": 1112, "json": 1130}


class FixedClock:
    def __init__(self, time: float) -> None:
        self.time = time

    def now(self):
        import datetime as dt

        return dt.datetime.fromtimestamp(self.time, dt.UTC)


def _fill(path: Path, meters: int, days: int) -> None:
    fleet = make_fleet(meters, 96 * days, START)
    store = Store.open(path, clock=FixedClock(START), map_size=1 << 30)
    for cycle in range(fleet.cycles):
        store.clock.time = int(fleet.received[:, cycle].max()) + 1
        store.put_readings(fleet.cycle(cycle, frames=False))
    store.close()


def _render(store: Store, template: int, days: int):
    window = Window(START, START + days * DAY)
    conventions = Conventions()
    ctx = ReportContext("bench", template, "bench", "", conventions, START + days * DAY, window)
    rendered = render(ctx, Selection(store, window, conventions))
    size, values = rendered.size, rendered.values
    rendered.close()
    return size, values


def _memory(path: Path, template: int, days: int) -> dict[str, float]:
    """In this (fresh) process: the render's peak allocations and peak RSS growth."""
    store = Store.open(path, readonly=True)
    _render(store, template, 0)  # imports and caches warm, nothing rendered
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    size, values = _render(store, template, days)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store.close()
    return {
        "values": values,
        "bytes": size,
        "peak_alloc_mib": peak / 2**20,
        "rss_growth_mib": (rss_after - rss_before) / 1024,
    }


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_reports")
    parser.add_argument("--meters", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-of", nargs=3, metavar=("STORE", "TEMPLATE", "DAYS"))
    args, _ = parser.parse_known_args(argv)
    if args.memory_of:
        path, template, days = args.memory_of
        print(json.dumps(_memory(Path(path), int(template), int(days))))
        return {}
    workdir = Path(tempfile.mkdtemp(prefix="mbusgw-bench-reports-"))
    try:
        return _run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: Path) -> dict:
    path = workdir / "store.mdb"
    started = time.perf_counter()
    _fill(path, args.meters, 2)
    results: dict = {"fill_s": time.perf_counter() - started}
    store = Store.open(path, readonly=True)
    for name, template in TEMPLATES.items():
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            size, values = _render(store, template, 1)
            times.append(time.perf_counter() - started)
        results[f"{name}_s"] = statistics.median(times)
        results[f"{name}_values"] = values
        results[f"{name}_mib"] = size / 2**20
    store.close()
    # each in a fresh process of its own (they measure their own memory only, so they may run
    # side by side)
    command = [sys.executable, "-m", "bench.bench_reports", "--memory-of", str(path)]
    children = {
        f"{name}_memory_{days}d": subprocess.Popen(
            [*command, str(TEMPLATES[name]), str(days)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        for name in ("csv", "excel")
        for days in (1, 2)
    }
    for key, child in children.items():
        out, _ = child.communicate()
        if child.returncode:
            raise subprocess.CalledProcessError(child.returncode, child.args, out)
        results[key] = json.loads(out.strip().splitlines()[-1])
    _print(results)
    return results


def _print(results: dict) -> None:
    print(f"{'template':<26}{'values':>10}{'MiB':>8}{'seconds':>9}{'goal':>7}{'ratio':>7}")
    for name, label in (
        ("csv", "x101 CSV, value per row"),
        ("readings_csv", "x102 CSV, reading per row"),
        ("excel", "x112 Excel"),
        ("json", "x130 JSON"),
    ):
        goal = GOALS.get(f"{name}_s")
        seconds = results[f"{name}_s"]
        ratio = f"{seconds / goal:.2f}" if goal else "-"
        print(
            f"{label:<26}{results[f'{name}_values']:>10,}{results[f'{name}_mib']:>8.1f}"
            f"{seconds:>9.2f}{goal or '-':>7}{ratio:>7}"
        )
    print("\nmemory while rendering (fresh process per run): 1 day vs 2 days of values")
    print(f"{'template':<12}{'values':>20}{'peak alloc MiB':>20}{'RSS growth MiB':>20}")
    for name in ("csv", "excel"):
        one, two = results[f"{name}_memory_1d"], results[f"{name}_memory_2d"]
        print(
            f"{name:<12}{one['values']:>9,} → {two['values']:>9,}"
            f"{one['peak_alloc_mib']:>9.1f} → {two['peak_alloc_mib']:>7.1f}"
            f"{one['rss_growth_mib']:>9.1f} → {two['rss_growth_mib']:>7.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
