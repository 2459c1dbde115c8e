"""The terminal's ``show values`` for 512 meters (issue 17 goal: ≤ 200 ms), over a real
loopback socket: from sending the command to the next prompt, the store real (LMDB in a
temporary directory, the newest cycles of ten values a meter), the service the gateway runs.
Each figure is the median of ``--repeat`` runs after one warm-up. No peer publishes terminal
timings to compare with.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import trio

from bench.service_bench import run_in_tempdir, service_gateway
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
    settings = {"terminal": {"enabled": True, "port": 0, "read_password": PASSWORD}}
    results: dict[str, Any] = {"meters": args.meters}
    async with service_gateway(workdir, args.meters, settings) as (gateway, nursery):
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
    return results


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_terminal")
    parser.add_argument("--meters", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=9)
    args, _ = parser.parse_known_args([a for a in argv if a.startswith("--")])
    results = run_in_tempdir("terminal", _bench, args)
    print(f"{'workload':<28}{'median ms':>12}{'bytes':>12}{'goal ms':>10}")
    value = results["show_values_512_ms"]
    size = results["show_values_512_bytes"]
    print(f"{'show values (' + str(args.meters) + ' meters)':<28}{value:>12.2f}{size:>12}{200:>10}")
    return results
