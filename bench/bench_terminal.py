"""The terminal's ``show values`` for 512 meters (issue 17 goal: ≤ 200 ms), over a real
loopback socket: from sending the command to the next prompt, the store real (LMDB in a
temporary directory, the newest cycles of ten values a meter), the service the gateway runs.
Each figure is the median of ``--repeat`` runs after one warm-up. No peer publishes terminal
timings to compare with.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench.bench_web import SLOT, YEAR_START, BenchGateway, FixedClock, _fill, _meter
from mbusgw.gateway.settings import StartupConfig
from mbusgw.gateway.store import Store, StoreWriter
from mbusgw.web.terminal.service import TerminalService

SMOKE_ARGV = ["--meters=4", "--repeat=1"]
GOALS_MS = {"show_values_512": 200.0}
PASSWORD = "bench-read"


async def _until(stream: trio.SocketStream, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = await stream.receive_some(1 << 20)
        if not chunk:
            raise RuntimeError(f"the terminal closed: {data[-200:]!r}")
        data += chunk
    return data


async def _bench(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    clock = FixedClock(YEAR_START)
    store = Store.open(workdir / "store.mdb", clock=clock)
    names, _ = await _fill(store, args.meters, 1)
    clock.time = YEAR_START + (96 + 8) * SLOT
    store.update_settings({"terminal": {"enabled": True, "port": 0, "read_password": PASSWORD}})
    writer = StoreWriter(store)
    results: dict[str, Any] = {"meters": args.meters}
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        meters = [_meter(key, i) for i, key in enumerate(names)]
        gateway = BenchGateway(store, writer, StartupConfig(data_dir=workdir), clock, meters)
        service = TerminalService(gateway)
        host, port = await nursery.start(service.run)
        stream = await trio.open_tcp_stream(host, port)
        await _until(stream, b"Password: ")
        await stream.send_all(PASSWORD.encode() + b"\r\n")
        await _until(stream, b":read> ")
        samples = []
        size = 0
        for run in range(args.repeat + 1):
            started = time.perf_counter()
            await stream.send_all(b"show values\r\n")
            answer = await _until(stream, b":read> ")
            if run:
                samples.append(time.perf_counter() - started)
            size = len(answer)
        await stream.aclose()
        results["show_values_512_ms"] = round(statistics.median(samples) * 1000, 2)
        results["show_values_512_bytes"] = size
        writer.close()
        nursery.cancel_scope.cancel()
    store.close()
    return results


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_terminal")
    parser.add_argument("--meters", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=9)
    args, _ = parser.parse_known_args([a for a in argv if a.startswith("--")])
    with tempfile.TemporaryDirectory(
        prefix="mbusgw-bench-terminal-", ignore_cleanup_errors=True
    ) as tmp:
        results = trio.run(_bench, Path(tmp), args)
    print(f"{'workload':<28}{'median ms':>12}{'bytes':>12}{'goal ms':>10}")
    value = results["show_values_512_ms"]
    size = results["show_values_512_bytes"]
    print(f"{'show values (' + str(args.meters) + ' meters)':<28}{value:>12.2f}{size:>12}{200:>10}")
    return results
