"""The gateway in continuous read mode: 512 meters on 8 lines at 2400 baud (issue goals: CPU
≤ 1 % of one core, resident memory ≤ 100 MB, a reading in the snapshot ≤ 5 ms after its reply).

The simulated lines run in a separate process (``mbusgw simulate``) so that only the gateway's
own CPU time and memory are measured. ``python -m bench.run gateway --seconds 60``.

``--services all`` switches on every service of the integrations issue and uses it meanwhile
(``bench/services_load.py``: SNMP walked, MQTT to a local mosquitto, ``/metrics`` scraped, the
event stream open), with one "read all & store" cycle beside continuous mode so that MQTT has
stored readings to publish; the default ``none`` leaves them off.

``--modbus`` serves Modbus TCP (on a free port, no client) as the default settings do: its
register image follows the snapshot. ``--driver trio|threads`` chooses the bus driver
(``MBusSettings.driver``; default: the setting's default). ``--cpu-quota PERCENT`` runs the
gateway (this process, while it measures; the simulator and the I/O-only peers stay outside)
in a CPU cgroup of that share of one core:
cgroup v1 ``cpu`` (``cfs_period_us`` 100000, ``cfs_quota_us`` PERCENT × 1000) where the machine
has it, else cgroup v2 ``cpu.max`` with the same numbers.

The peers (``bench/io_floor.py``) run after the gateway on the same lines, each for
``--peer-seconds``; the blocking-thread peer also runs beside it, in a process of its own on
lines of a second simulator, measured over the same seconds as the gateway ("at the same
time"). On a shared machine the CPU an exchange costs drifts by a third from minute to
minute; measured together, the gateway and that peer see the same drift.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import numpy as np
import trio

from bench import io_floor
from bench.memory import rss_split_mb
from bench.services_load import all_services
from mbusgw.gateway import heap
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.malloc import fix_thresholds
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.gateway.store import Store, store_path

LINES, METERS_PER_LINE, BAUD = 8, 64, 2400
# s between looks at the snapshot: each look wakes trio's thread, whose CPU is measured, and
# trio no longer wakes for the readings themselves; 5 s are about 75 readings (RECENT keeps 256)
FOLLOW_INTERVAL = 5.0
SMOKE_ARGV = ["--seconds=1", "--warmup=0.2", "--peer-seconds=0.5"]
GOALS = {"cpu_percent": 1.0, "rss_mb": 100.0, "snapshot_latency_ms": 5.0}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000


@contextmanager
def cpu_quota(percent: float | None) -> Iterator[str | None]:
    """This process in a CPU cgroup limited to ``percent`` of one core, while inside; yields
    which kind of group it is (None: no limit asked for)."""
    if percent is None:
        yield None
        return
    quota = round(CFS_PERIOD_US * percent / 100)
    if quota < 1000:
        raise SystemExit("--cpu-quota: the kernel's smallest quota is 1 % of one core")
    pid = str(os.getpid())
    if (CGROUP_V1_CPU / "cpu.cfs_quota_us").exists():
        root, kind = CGROUP_V1_CPU, "cgroup v1 cpu"
        group = root / f"mbusgw-bench-{pid}"
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    elif (CGROUP_V2 / "cgroup.controllers").exists():
        root, kind = CGROUP_V2, "cgroup v2 cpu.max"
        (root / "cgroup.subtree_control").write_text("+cpu")
        group = root / f"mbusgw-bench-{pid}"
        group.mkdir()
        (group / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
    else:
        raise SystemExit("--cpu-quota: this machine has no CPU cgroup controller")
    try:
        (group / "cgroup.procs").write_text(pid)  # every thread of the process
        yield kind
    finally:
        (root / "cgroup.procs").write_text(pid)
        group.rmdir()


def start_simulator(lines: int = LINES) -> tuple[subprocess.Popen, list[int]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mbusgw.gateway.cli",
            "simulate",
            "--tcp",
            "127.0.0.1:0",
            "--lines",
            str(lines),
            "--meters",
            str(METERS_PER_LINE),
            "--baud",
            str(BAUD),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ports = []
    for _ in range(lines):
        ready = json.loads(process.stdout.readline())
        ports.append(int(ready["tcp"].rsplit(":", 1)[1]))
    return process, ports


def line_threads() -> tuple[float, int]:
    """CPU seconds and wake-ups (voluntary context switches) of the native driver's line
    threads so far."""
    cpu, wakes = 0.0, 0
    for thread in threading.enumerate():
        if not thread.name.startswith("bus ") or thread.native_id is None:
            continue
        task = Path(f"/proc/self/task/{thread.native_id}")
        try:
            cpu += int((task / "schedstat").read_text().split()[0]) / 1e9
            status = (task / "status").read_text()
        except FileNotFoundError:
            continue  # it ended meanwhile
        wakes += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    return cpu, wakes


def exchanges(gateway: Gateway) -> int:
    return sum(line.master.stats.exchanges for line in gateway.lines.values())


class Beside:
    """The blocking-thread peer in a process of its own, on lines of its own simulator,
    measured over the window the gateway is measured in (``begin``, ``end``)."""

    def __init__(self) -> None:
        self.simulator, ports = start_simulator()
        self.peer = subprocess.Popen(
            [sys.executable, "-m", "bench.io_floor", "--baud", str(BAUD), *map(str, ports)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def begin(self) -> None:
        self._tell("begin")

    def end(self) -> None:
        self._tell("end")

    def _tell(self, word: str) -> None:
        assert self.peer.stdin is not None
        self.peer.stdin.write(word + "\n")
        self.peer.stdin.flush()

    def result(self) -> dict:
        out, _ = self.peer.communicate(timeout=30)
        if self.peer.returncode != 0:
            raise RuntimeError(f"the peer beside the gateway failed ({self.peer.returncode})")
        return json.loads(out)

    def close(self) -> None:
        if self.peer.poll() is None:
            self.peer.kill()
            self.peer.wait(timeout=10)
        self.simulator.terminate()
        self.simulator.wait(timeout=10)


async def measure(
    data_dir: Path,
    ports: list[int],
    seconds: float,
    warmup: float,
    services: str = "none",
    beside: Beside | None = None,
) -> dict:
    interfaces = tuple(
        InterfaceConfig(name=f"line{k}", kind="tcp", host="127.0.0.1", port=port, baud=BAUD)
        for k, port in enumerate(ports)
    )
    fix_thresholds()  # as ``mbusgw run`` does before it starts
    # the web interface runs as it does for a user, on a free port (runs side by side can't clash)
    gateway = Gateway(StartupConfig(data_dir, interfaces=interfaces, web_port=0))
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        header = "Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress\n"
        for line in gateway.lines:
            rows = "".join(
                f"{line}-{p},,{BAUD},primary,{p}\n" for p in range(1, METERS_PER_LINE + 1)
            )
            await gateway.install_meter_list(header + rows, interface=line)
        await gateway.update_settings({"reading": {"continuous": True}})
        # as ``mbusgw run`` does once started (there the meter list comes from the store)
        heap.settle()
        in_use = AsyncExitStack()
        service_report = None
        if services == "all":
            service_report = await in_use.enter_async_context(all_services(gateway, data_dir))
            # continuous mode stores nothing: a stored cycle gives MQTT its readings to publish
            nursery.start_soon(gateway.read_all)

        def look() -> None:
            # the readings since the last look (each carries when its reply ended and when it
            # became visible), with the version read together: line threads put readings
            nonlocal followed
            now, recent = gateway.live.changes_after(followed)
            if now - followed > len(recent):
                raise RuntimeError("the latency probe fell behind the snapshot's window")
            latencies.extend(r.published - r.reply_ended for r in recent if r.ok)
            followed = now

        async def follow() -> None:
            # the probe must not add CPU to what is measured: instead of waking for every
            # reading it looks every FOLLOW_INTERVAL, and once more at the end
            while True:
                await trio.sleep(FOLLOW_INTERVAL)
                look()

        await trio.sleep(warmup)
        followed = gateway.live.version
        nursery.start_soon(follow)
        reads_before = sum(h.readings for h in gateway.health.values())
        exchanges_before = exchanges(gateway)
        cpu_before = io_floor.cpu_seconds()
        trio_before = time.thread_time()  # this task runs in the trio thread
        lines_before = line_threads()
        wall_before = time.monotonic()
        if beside is not None:
            beside.begin()
        await trio.sleep(seconds)
        cpu = io_floor.cpu_seconds() - cpu_before
        if beside is not None:
            beside.end()
        trio_cpu = time.thread_time() - trio_before
        look()
        lines_after = line_threads()
        lines_cpu, lines_wakes = lines_after[0] - lines_before[0], lines_after[1] - lines_before[1]
        wall = time.monotonic() - wall_before
        reads = sum(h.readings for h in gateway.health.values()) - reads_before
        exchange_count = exchanges(gateway) - exchanges_before
        failures = sum(h.failures for h in gateway.health.values())
        memory, split = rss_mb(), rss_split_mb(os.getpid())
        drivers = sorted({type(line.master).__name__ for line in gateway.lines.values()})
        await in_use.aclose()
        gateway.stop()
        nursery.cancel_scope.cancel()
    heap.release()
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "meters": LINES * METERS_PER_LINE,
        "lines": LINES,
        "driver": ", ".join(drivers),
        "baud": BAUD,
        "seconds": round(wall, 1),
        "meter_reads": reads,
        "reads_per_second": round(reads / wall, 1),
        "failed_reads": failures,
        "cpu_seconds": round(cpu, 3),
        "cpu_percent": round(100 * cpu / wall, 3),
        "cpu_ms_per_read": round(1000 * cpu / max(reads, 1), 3),
        # the trio side of a reading: with the threads driver its share of a batch handed back
        # from the line threads (health, events, the snapshot's waiters; the line thread has
        # decoded it and put it in the snapshot), with the trio driver all of it
        "trio_thread_cpu_ms_per_read": round(1000 * trio_cpu / max(reads, 1), 3),
        "exchanges": exchange_count,
        # the line threads of the native driver (none with the trio driver)
        "line_threads_cpu_ms_per_exchange": round(1000 * lines_cpu / max(exchange_count, 1), 3),
        "line_threads_wakes_per_exchange": round(lines_wakes / max(exchange_count, 1), 2),
        "cpu_ms_per_exchange": round(1000 * cpu / max(exchange_count, 1), 3),
        "rss_mb": round(memory, 1),
        "rss_anon_mb": split["anon"],
        "rss_file_mb": split["file"],
        "services": services,
        "service_report": service_report,
        "snapshot_latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 3),
            "p99": round(float(np.percentile(lat, 99)), 3),
            "max": round(float(lat.max()), 3),
        },
    }


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_gateway")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--peer-seconds", type=float, default=20.0)
    parser.add_argument("--driver", choices=("trio", "threads"), default=None)
    parser.add_argument("--cpu-quota", type=float, default=None, metavar="PERCENT")
    parser.add_argument("--services", choices=("none", "all"), default="none")
    parser.add_argument("--modbus", action="store_true")
    args, _ = parser.parse_known_args(argv)
    mbus = {} if args.driver is None else {"mbus": {"driver": args.driver}}
    simulator, ports = start_simulator()
    beside = None
    try:
        beside = Beside()
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            store = Store.open(store_path(data_dir))
            store.update_settings(
                {
                    "modbus": {"enabled": args.modbus, "port": 0},
                    "reading": {"read_at_start": False, "schedule": "0 0 1 1 *"},
                    **mbus,
                }
            )
            store.close()
            with cpu_quota(args.cpu_quota) as quota_kind:
                result = trio.run(
                    measure, data_dir, ports, args.seconds, args.warmup, args.services, beside
                )
            result["cpu_quota"] = (
                None if quota_kind is None else {"percent": args.cpu_quota, "group": quota_kind}
            )
        peer_warmup = min(args.warmup, 3.0)
        result["peers"] = {
            "trio_io_only": io_floor.trio_peer(ports, BAUD, args.peer_seconds, peer_warmup),
            "threads_io_only": io_floor.thread_peer(ports, BAUD, args.peer_seconds, peer_warmup),
            "one_thread_io_only": io_floor.poll_peer(ports, BAUD, args.peer_seconds, peer_warmup),
            "threads_io_only_same_time": beside.result(),
        }
    finally:
        if beside is not None:
            beside.close()
        simulator.terminate()
        simulator.wait(timeout=10)
    latency = result["snapshot_latency_ms"]
    quota = result["cpu_quota"]
    limit = "" if quota is None else f", {quota['percent']} % of one core ({quota['group']})"
    result["modbus"] = args.modbus
    limit += ", Modbus TCP served" if args.modbus else ""
    print(
        f"{result['meters']} meters on {LINES} lines at {BAUD} baud, continuous mode, "
        f"{result['seconds']} s measured, {result['driver']}{limit}"
    )
    print(
        f"  reads/s            {result['reads_per_second']:>10}  ({result['failed_reads']} failed)"
    )
    print(
        f"  gateway CPU        {result['cpu_percent']:>9}%  of one core "
        f"(goal ≤ {GOALS['cpu_percent']} %; "
        f"ratio {result['cpu_percent'] / GOALS['cpu_percent']:.2f})"
    )
    print(f"  CPU per read       {result['cpu_ms_per_read']:>8} ms")
    print(f"    in trio's thread {result['trio_thread_cpu_ms_per_read']:>8} ms")
    print(
        f"  resident memory    {result['rss_mb']:>8} MB  (goal ≤ {GOALS['rss_mb']:.0f} MB; "
        f"anon {result['rss_anon_mb']}, file {result['rss_file_mb']}; services: {args.services})"
    )
    if result["service_report"] is not None:
        print(f"  services in use    {result['service_report']}")
    print(
        f"  reply → snapshot   p50 {latency['p50']} ms, p99 {latency['p99']} ms, "
        f"max {latency['max']} ms (goal ≤ {GOALS['snapshot_latency_ms']} ms)"
    )
    print(
        f"  line threads       {result['line_threads_cpu_ms_per_exchange']:>8} ms per exchange, "
        f"{result['line_threads_wakes_per_exchange']} wake-ups"
    )
    print("CPU per exchange on the same lines (peers: the protocol's I/O and nothing else)")
    own = result["cpu_ms_per_exchange"]
    rate = result["exchanges"] / result["seconds"]
    print(f"  gateway            {own:>8} ms  ({rate:.1f} exchanges/s)")
    peers = (
        ("trio_io_only", "I/O only, trio"),
        ("threads_io_only", "I/O only, threads"),
        ("one_thread_io_only", "I/O only, 1 thread"),
        ("threads_io_only_same_time", "threads, same time"),
    )
    for name, label in peers:
        peer = result["peers"][name]
        per = peer["cpu_ms_per_exchange"]
        print(
            f"  {label:<18} {per:>8} ms  gateway ratio {own / max(per, 1e-9):.2f}; "
            f"at the gateway's rate {per * rate / 10:.2f} % of one core "
            f"({peer['silent']} of {peer['exchanges']} unanswered)"
        )
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
