"""Every benchmark still runs: each module on its tiny smoke workload (``bench.run --smoke``).

The numbers of a smoke run mean nothing (and are not asserted); what is checked is that each
module runs to the end and returns its results in their usual shape.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

# the modules are found by name here and imported in the test, so that collecting this file
# needs no checkout on the path (the bounds-checked run collects from tests/)
MODULES = sorted(path.stem for path in (Path(__file__).parents[1] / "bench").glob("bench_*.py"))

# what each module's results hold at the top level (a benchmark that stops reporting one fails)
SHAPES = {
    "bus": {"occupancy", "no_answer", "primary_scan", "secondary_scan", "parallel", "cpu"},
    "dlms": {"meters", "main_registers_s", "registers_with_value", "object_list_s"},
    "decode": {"frames", "records", "rejected", "us_per_frame"},
    "gateway": {
        "meters",
        "reads_per_second",
        "cpu_percent",
        "trio_thread_cpu_ms_per_read",
        "snapshot_latency_ms",
        "peers",
    },
    "migration": {"migrate_s", "store_mib", "kept_copy_mib", "raw_telegrams", "values"},
    "ops": {"metrics_512_ms", "snmpwalk_meter_table_512_ms", "mqtt_cycle_512_ms"},
    "modbus": {"paced", "saturated", "pymodbus", "stored", "ratio_saturated_vs_pymodbus"},
    "site": {"search_s", "first_read_s", "latest_ms", "meters_api_ms", "meters_page_ms", "rss_mb"},
    "reports": {"fill_s", "csv_s", "excel_s", "json_s", "csv_memory_1d", "excel_memory_2d"},
    "slave": {"virtual", "transparent"},
    "store": {"ingest_values_per_s", "bytes_per_value", "latest_512_meters_ms", "year_series_ms"},
    "terminal": {"meters", "show_values_512_ms", "show_values_512_bytes"},
    "underload": {"goals", "runs"},
    "web": {"fill_s", "series_values", "values_latest_512_ms"},
    "wmbus": {"us_per_telegram", "goal_us"},
}


def numbers(value: object) -> list[float]:
    """Every measured number; an ``added_*`` figure is a difference of two medians and may fall
    below zero in noise, so it is not one of them."""
    if isinstance(value, dict):
        return [
            n for key, item in value.items() if not key.startswith("added") for n in numbers(item)
        ]
    if isinstance(value, list | tuple):
        return [n for item in value for n in numbers(item)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [value]
    return []


def test_every_benchmark_has_a_smoke_workload_and_a_shape() -> None:
    from bench.run import module_names

    assert module_names() == MODULES
    assert {name.removeprefix("bench_") for name in MODULES} == set(SHAPES)


@pytest.mark.parametrize("name", MODULES)
def test_the_benchmark_runs_on_its_smoke_workload(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.run import run_modules

    area = name.removeprefix("bench_")
    results = run_modules([name], [], smoke=True)[area]
    assert SHAPES[area] <= set(results), sorted(results)
    measured = numbers(results)
    assert measured and all(math.isnan(n) or n >= 0 for n in measured)
    assert f"== {name}" in capsys.readouterr().out


def test_the_gateway_bench_loads_no_http_client_into_the_process_it_measures() -> None:
    """``bench gateway`` measures the memory of its own process, the gateway's: its clients
    run as processes of their own, and no HTTP client library is loaded beside the gateway."""
    root = Path(__file__).parents[1]
    code = (
        "import sys, bench.bench_gateway, bench.services_load; "
        "print(sorted({'httpx', 'httpcore', 'anyio'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]"]


def test_the_gateway_bench_measures_the_thread_peer_beside_the_gateway_too() -> None:
    """The blocking-thread peer also runs in a process of its own beside the gateway, measured
    over the gateway's own window, on lines of a second simulator."""
    from bench.run import run_modules

    peers = run_modules(["bench_gateway"], [], smoke=True)["gateway"]["peers"]
    beside = peers["threads_io_only_same_time"]
    assert beside["exchanges"] > 0 and beside["cpu_ms_per_exchange"] > 0
