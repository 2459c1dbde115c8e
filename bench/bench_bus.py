"""The wired bus master against the simulator, in real time at the stated baud rate.

The simulator runs as its own process (``mbusgw simulate``) and is reached over TCP (and a pty
where said), so the gateway's CPU time is measured alone. Workloads and how they are measured:

- ``occupancy``: 8 meters with the median telegram (87 bytes), answering after 11 bit times,
  read back to back at 2400 baud for a while (continuous reading: no SND_NKE; once more with
  SND_NKE before each read). Line occupancy = characters on the wire × 11 bit / wall time, from
  the gateway's exchanges and from the simulator's own view of the wire; the gap the gateway
  leaves between the end of an answer and its next request, in character times.
- ``no_answer``: SND_NKE to an address nobody has; time from the end of the request on the wire
  until the master has decided "no answer".
- ``primary_scan``: a primary scan of an empty line at 2400 baud. Every probe of an empty line
  costs the same, so a measured subrange is extrapolated to 0-250 by ×251/n (``--full-primary``
  runs all 251).
- ``secondary_scan``: 512 meters with random (and with sequential) IDs at 2400 baud. The exact
  scan runs under trio's MockClock against the same simulator code, so its time is the real
  timing policy without waiting 15 minutes; it is compared with the physical minimum for the
  probes it made, computed as in research/limits.md §1.5 (empty or colliding probe: selection
  (17 characters) + 330 bit + 50 ms + 11 bit; a hit: selection, E5, REQ_UD2, the 87-byte
  answer, each turnaround 11 bit, then the same purge timeout). A real run of 128 random meters
  at 38400 baud (``--full-secondary``: 512) is compared with its MockClock twin.
- ``parallel``: N lines (N = 1, 8, 32) at 2400 baud read back to back at once; throughput per
  line relative to one line alone.
- CPU time of the gateway process per meter read, decode included (``decode(raw).array``, what a
  store ingest does), and what that means for a weak ARM core (≈18× slower for Python).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import trio
import trio.testing

from mbusgw.core import decode
from mbusgw.core.busproto import Exchange, Outcome
from mbusgw.core.frame import snd_nke
from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.busrequests import MeterAddress, ReadSettings
from mbusgw.gateway.scan import PrimaryScan, SecondaryScan
from mbusgw.gateway.simulator import SimLine, scan_population
from mbusgw.gateway.simulator.serve import socket_pair
from mbusgw.gateway.transport import StreamTransport, serial_line, tcp_line

GOALS = {
    "occupancy": 0.95,
    "gap_chars": 2.0,
    "no_answer_s": 0.240,
    "primary_scan_s": 65.0,
    "secondary_ratio": 1.2,
    "secondary_random_s": 16 * 60,
    "secondary_sequential_s": 8 * 60,
    "parallel_ratio": 0.95,
}
# research/limits.md, for comparison (libmbus as coded; not measured here)
LIBMBUS = {"no_answer_s": 0.9, "primary_scan_s": 463.0}
WEAK_CORE_FACTOR = 18  # CPython on the reference ARM core vs this machine (limits.md §3)
LINE_LIMIT_READS = 8 / 0.431  # 8 lines at 2400 baud, median telegram, minimum timing
MEDIAN_FRAME = 87
SMOKE_ARGV = [
    "--seconds=1",
    "--probes=2",
    "--addresses=2",
    "--scan-meters=8",
    "--real-scan-meters=1",
    "--parallel=1,2",
]


def char_time(baud: int) -> float:
    return 11 / baud


def spec_timeout(baud: int) -> float:
    return 330 / baud + 0.050 + 11 / baud


class Simulator:
    """``mbusgw simulate`` in its own process; ``stop()`` returns its wire statistics."""

    def __init__(self, *args: str, lines: int = 1) -> None:
        command = [sys.executable, "-m", "mbusgw.gateway.cli", "simulate", *args]
        command += ["--lines", str(lines)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None
        self.lines = [json.loads(self.process.stdout.readline()) for _ in range(lines)]

    def stop(self) -> dict:
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=30)
        return json.loads(out)


def line_transport(info: dict):
    if "pty" in info:
        return serial_line(info["pty"], info["baud"])
    host, _, port = info["tcp"].rpartition(":")
    return tcp_line(host, int(port), info["baud"])


@dataclass
class Traffic:
    """Exchanges seen by one bus master."""

    exchanges: list[Exchange] = field(default_factory=list)
    reads: int = 0
    cpu: float = 0.0  # CPU seconds of this process while all lines were read

    def wire_chars(self) -> int:
        return sum(len(e.request) + sum(len(f) for f in e.frames) for e in self.exchanges)

    def span(self) -> float:
        return self.exchanges[-1].done_at - self.exchanges[0].sent_at

    def gaps(self) -> list[float]:
        pairs = zip(self.exchanges, self.exchanges[1:], strict=False)
        return [b.sent_at - a.done_at for a, b in pairs if a.outcome is Outcome.ANSWER]


async def read_back_to_back(
    infos: list[dict], seconds: float, *, init: bool = False, meters: int = 8
) -> list[Traffic]:
    """Every line read round-robin, all lines at once, for ``seconds``."""
    traffic = [Traffic() for _ in infos]
    settings = ReadSettings(init=init)

    async def one(index: int, bus: BusMaster, until: float) -> None:
        for address in itertools.cycle(range(1, meters + 1)):
            if trio.current_time() >= until:
                return
            reading = await bus.read(MeterAddress(primary=address), settings)
            for raw in reading.frames:
                decode(raw).array  # noqa: B018 - what a store ingest does with each telegram
            traffic[index].reads += 1

    async with trio.open_nursery() as nursery:
        buses = []
        for index, info in enumerate(infos):
            bus = BusMaster(line_transport(info), on_exchange=traffic[index].exchanges.append)
            await nursery.start(bus.run)
            buses.append(bus)
        for bus in buses:  # connect and warm up before the clock starts
            await bus.read(MeterAddress(primary=1), settings)
        for t in traffic:
            t.exchanges.clear()
        until = trio.current_time() + seconds
        cpu = time.process_time()
        async with trio.open_nursery() as readers:
            for index, bus in enumerate(buses):
                readers.start_soon(one, index, bus, until)
        cpu = time.process_time() - cpu
        for t in traffic:
            t.cpu = cpu
        for bus in buses:
            await bus.transport.aclose()
        nursery.cancel_scope.cancel()
    return traffic


def occupancy(kind: str, seconds: float, init: bool) -> dict:
    where = ["--pty"] if kind == "pty" else []
    sim = Simulator("--population", "median", "--meters", "8", "--baud", "2400", *where)
    try:
        (traffic,) = trio.run(partial(read_back_to_back, sim.lines, seconds, init=init))
    finally:
        stats = sim.stop()["sim0"]
    tc = char_time(2400)
    # a window too short for two reads has no gap (NaN rather than a made-up number)
    gaps = sorted(g / tc for g in traffic.gaps()) or [math.nan]
    return {
        "transport": kind,
        "init": init,
        "reads": traffic.reads,
        "seconds": round(traffic.span(), 2),
        "occupancy_gateway": round(traffic.wire_chars() * tc / traffic.span(), 4),
        "occupancy_wire": round(stats["occupancy"], 4),
        "gap_p50_chars": round(gaps[len(gaps) // 2], 2),
        "gap_p99_chars": round(gaps[int(len(gaps) * 0.99)], 2),
        "wire_gap_p50_chars": round(stats["gap_p50_s"] / tc, 2),
        "wire_gap_p99_chars": round(stats["gap_p99_s"] / tc, 2),
        "cpu_ms_per_read": round(1000 * traffic.cpu / traffic.reads, 3),
    }


async def _no_answer(info: dict, count: int) -> list[float]:
    bus = BusMaster(line_transport(info))
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        detections = []
        for _ in range(count):
            exchange = await bus.transfer(snd_nke(200), expect_ack=True)
            assert exchange.outcome is Outcome.SILENT
            detections.append(exchange.done_at - exchange.request_end)
        await bus.transport.aclose()
        nursery.cancel_scope.cancel()
    return detections


async def _primary_scan(info: dict, addresses: list[int]) -> tuple[float, int]:
    bus = BusMaster(line_transport(info))
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        await bus.transfer(snd_nke(250), expect_ack=True)  # connect first
        start = trio.current_time()
        scan = await PrimaryScan(addresses=addresses).run(bus)
        elapsed = trio.current_time() - start
        await bus.transport.aclose()
        nursery.cancel_scope.cancel()
    return elapsed, len(scan.found)


def no_answer_and_primary_scan(
    full: bool, probes: int = 20, measured: int = 40
) -> tuple[dict, dict]:
    # a line whose meters have no primary address: empty for SND_NKE to 0-250
    sim = Simulator("--population", "random", "--meters", "1", "--baud", "2400")
    try:
        detections = trio.run(_no_answer, sim.lines[0], probes)
        addresses = list(range(251)) if full else list(range(measured))
        elapsed, found = trio.run(_primary_scan, sim.lines[0], addresses)
    finally:
        sim.stop()
    assert found == 0
    no_answer = {
        "probes": len(detections),
        "median_s": round(statistics.median(detections), 4),
        "max_s": round(max(detections), 4),
        "spec_bound_s": round(spec_timeout(2400), 4),
    }
    primary = {
        "addresses_measured": len(addresses),
        "measured_s": round(elapsed, 2),
        "seconds_0_250": round(elapsed * 251 / len(addresses), 1),
        "extrapolated": not full,
        "spec_minimal_s": round(251 * (5 * char_time(2400) + spec_timeout(2400)), 1),
    }
    return no_answer, primary


def limits_minimum(probes: int, hits: int, baud: int, alphabet: int = 10) -> float:
    """research/limits.md §1.5 cost of a tree search with these probe counts."""
    tc, timeout = char_time(baud), spec_timeout(baud)
    collisions = (probes - 1) // alphabet
    empty_or_collision = probes - hits
    assert empty_or_collision >= collisions
    hit = (17 + 1 + 1 + 5 + 1 + MEDIAN_FRAME) * tc + timeout
    return empty_or_collision * (17 * tc + timeout) + hits * hit


async def _mock_scan(count: int, style: str, baud: int, seed: int) -> dict:
    meters = scan_population(count, seed=seed, style=style)
    line = SimLine(meters, baud)
    master_end, line_end = socket_pair()
    bus = BusMaster(StreamTransport(master_end, baud))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(line.serve, line_end)
        await nursery.start(bus.run)
        start = trio.current_time()
        scan = await SecondaryScan.start().run(bus)
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert len(scan.found) == count and not scan.unresolved
    return {"probes": scan.probes, "requests": scan.requests, "seconds": elapsed}


def mock_secondary(count: int, style: str, baud: int, seed: int) -> dict:
    clock = trio.testing.MockClock(autojump_threshold=0)
    result = trio.run(_mock_scan, count, style, baud, seed, clock=clock)
    minimum = limits_minimum(result["probes"], count, baud)
    return {
        "meters": count,
        "ids": style,
        "baud": baud,
        "probes": result["probes"],
        "requests": result["requests"],
        "seconds": round(result["seconds"], 1),
        "minimum_s": round(minimum, 1),
        "ratio": round(result["seconds"] / minimum, 3),
    }


async def _real_scan(info: dict) -> tuple[float, int, int]:
    bus = BusMaster(line_transport(info))
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        await bus.transfer(snd_nke(250), expect_ack=True)  # connect first
        start = trio.current_time()
        scan = await SecondaryScan.start().run(bus)
        elapsed = trio.current_time() - start
        await bus.transport.aclose()
        nursery.cancel_scope.cancel()
    return elapsed, scan.probes, len(scan.found)


def real_secondary(count: int, baud: int) -> dict:
    sim = Simulator("--population", "random", "--meters", str(count), "--baud", str(baud))
    try:
        elapsed, probes, found = trio.run(_real_scan, sim.lines[0])
    finally:
        sim.stop()
    # the simulator built its meters with seed 1 * 1000 + line 0: the same population here
    twin = mock_secondary(count, "random", baud, 1000)
    return {
        "meters": count,
        "baud": baud,
        "found": found,
        "probes": probes,
        "seconds": round(elapsed, 1),
        "mock_clock_seconds": twin["seconds"],
        "real_vs_mock": round(elapsed / twin["seconds"], 3),
        "minimum_s": twin["minimum_s"],
        "ratio": round(elapsed / twin["minimum_s"], 3),
    }


def parallel(counts: tuple[int, ...], seconds: float) -> list[dict]:
    sim = Simulator("--population", "median", "--meters", "4", "--baud", "2400", lines=max(counts))
    rows = []
    try:
        for n in counts:
            traffic = trio.run(partial(read_back_to_back, sim.lines[:n], seconds, meters=4))
            reads = sum(t.reads for t in traffic)
            cpu = traffic[0].cpu
            # each line's rate over its own span (first request to last answer), so the end of
            # the window cuts no read in half
            rates = [t.reads / t.span() for t in traffic]
            rows.append(
                {
                    "lines": n,
                    "reads": reads,
                    "reads_per_s_per_line": statistics.mean(rates),
                    "slowest_line": min(rates),
                    "cpu_ms_per_read": round(1000 * cpu / reads, 3),
                }
            )
    finally:
        sim.stop()
    single = rows[0]["reads_per_s_per_line"]
    for row in rows:
        row["ratio_to_single"] = round(row["reads_per_s_per_line"] / single, 3)
        row["slowest_to_single"] = round(row["slowest_line"] / single, 3)
        row["reads_per_s_per_line"] = round(row["reads_per_s_per_line"], 3)
        row["slowest_line"] = round(row["slowest_line"], 3)
    return rows


def verdict(ok: bool) -> str:
    return "meets goal" if ok else "MISSES goal"


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_bus")
    parser.add_argument("--full-primary", action="store_true", help="probe all 251 addresses")
    parser.add_argument("--full-secondary", action="store_true", help="512 meters over TCP")
    parser.add_argument("--seconds", type=float, default=20.0, help="reading back to back")
    parser.add_argument("--probes", type=int, default=20, help="no-answer probes")
    parser.add_argument("--addresses", type=int, default=40, help="primary addresses timed")
    parser.add_argument("--scan-meters", type=int, default=512, help="MockClock secondary scans")
    parser.add_argument("--real-scan-meters", type=int, default=128, help="real secondary scan")
    parser.add_argument("--parallel", default="1,8,32", help="line counts read at once")
    args, _ = parser.parse_known_args(argv)
    seconds = args.seconds
    results: dict = {}

    print("occupancy, reading back to back at 2400 baud (median telegram, 11-bit turnaround)")
    runs = [
        occupancy("tcp", seconds, False),
        occupancy("pty", seconds, False),
        occupancy("tcp", seconds / 2, True),
    ]
    results["occupancy"] = runs
    for r in runs:
        init = "SND_NKE+REQ_UD2" if r["init"] else "REQ_UD2 only"
        print(
            f"  {r['transport']:3} {init:15} {r['reads']:4} reads  occupancy "
            f"{100 * r['occupancy_gateway']:.1f} % (wire {100 * r['occupancy_wire']:.1f} %, "
            f"limit 97.9 %)  gap p50 {r['gap_p50_chars']} / p99 {r['gap_p99_chars']} chars "
            f"(on the wire {r['wire_gap_p50_chars']} / {r['wire_gap_p99_chars']})  "
            f"{r['cpu_ms_per_read']} ms CPU/read"
        )
    best = runs[0]
    print(
        f"  goal ≥ 95 %, ≤ 2 characters added: {verdict(best['occupancy_wire'] >= 0.95)}, "
        f"{verdict(best['wire_gap_p50_chars'] <= GOALS['gap_chars'])}"
    )

    no_answer, primary = no_answer_and_primary_scan(args.full_primary, args.probes, args.addresses)
    results["no_answer"] = no_answer
    results["primary_scan"] = primary
    print(
        f"no-answer detection at 2400 baud: median {1000 * no_answer['median_s']:.1f} ms, max "
        f"{1000 * no_answer['max_s']:.1f} ms (spec bound {1000 * no_answer['spec_bound_s']:.1f} "
        f"ms, goal ≤ 240 ms, libmbus 900 ms: ×{LIBMBUS['no_answer_s'] / no_answer['max_s']:.1f} "
        f"faster) {verdict(no_answer['max_s'] <= GOALS['no_answer_s'])}"
    )
    how = "extrapolated from" if primary["extrapolated"] else "all of"
    print(
        f"primary scan 0-250, empty line, 2400 baud: {primary['seconds_0_250']} s ({how} "
        f"{primary['addresses_measured']} addresses: {primary['measured_s']} s); spec minimal "
        f"{primary['spec_minimal_s']} s, goal ≤ 65 s, libmbus 463 s: "
        f"×{LIBMBUS['primary_scan_s'] / primary['seconds_0_250']:.1f} faster "
        f"{verdict(primary['seconds_0_250'] <= GOALS['primary_scan_s'])}"
    )

    print("secondary scan (MockClock, the exact timing policy), 2400 baud")
    count = args.scan_meters
    secondary = [
        mock_secondary(count, "random", 2400, 1),
        mock_secondary(count, "sequential", 2400, 1),
    ]
    for r in secondary:
        goal = GOALS[f"secondary_{r['ids']}_s"]
        print(
            f"  {count} {r['ids']:10} {r['probes']:5} probes {r['requests']:5} requests  "
            f"{r['seconds'] / 60:.1f} min  minimum {r['minimum_s'] / 60:.1f} min  "
            f"×{r['ratio']}  {verdict(r['ratio'] <= 1.2 and r['seconds'] <= goal)}"
        )
    real = real_secondary(512 if args.full_secondary else args.real_scan_meters, 38400)
    results["secondary_scan"] = {"mock_clock": secondary, "real": real}
    print(
        f"  real run: {real['meters']} random at {real['baud']} baud over TCP: {real['found']} "
        f"found, {real['probes']} probes, {real['seconds']} s (MockClock twin "
        f"{real['mock_clock_seconds']} s: ×{real['real_vs_mock']}); minimum {real['minimum_s']} "
        f"s: ×{real['ratio']}"
    )

    counts = tuple(int(n) for n in args.parallel.split(","))
    rows = parallel(counts, seconds)
    results["parallel"] = rows
    print("parallel lines at 2400 baud (TCP), reading back to back")
    for row in rows:
        print(
            f"  N={row['lines']:2}  {row['reads_per_s_per_line']:.3f} reads/s per line (slowest "
            f"{row['slowest_line']:.3f})  ×{row['ratio_to_single']} of one line alone (slowest "
            f"×{row['slowest_to_single']})  {row['cpu_ms_per_read']} ms CPU/read  "
            f"{verdict(row['ratio_to_single'] >= GOALS['parallel_ratio'])}"
        )

    eight = next((row for row in rows if row["lines"] == 8), rows[-1])
    weak = eight["cpu_ms_per_read"] / 1000 * WEAK_CORE_FACTOR * LINE_LIMIT_READS
    results["cpu"] = {
        "ms_per_read_one_line": runs[0]["cpu_ms_per_read"],
        "ms_per_read_8_lines": eight["cpu_ms_per_read"],
        "ms_per_read_32_lines": rows[-1]["cpu_ms_per_read"],
        "weak_core_share_8_lines_2400": round(weak, 4),
    }
    print(
        f"CPU per read (decode included): {runs[0]['cpu_ms_per_read']} ms with one line, "
        f"{eight['cpu_ms_per_read']} ms with 8, {rows[-1]['cpu_ms_per_read']} ms with 32; "
        f"8 lines at 2400 baud at the line limit ({LINE_LIMIT_READS:.1f} reads/s) on a weak ARM "
        f"core (×{WEAK_CORE_FACTOR}): {100 * weak:.1f} % of the core"
    )
    return results
