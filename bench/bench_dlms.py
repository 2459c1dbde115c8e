"""The DLMS/COSEM server: the main register (value and scaler_unit) of every meter over one
association (issue 17 goal: 512 meters in ≤ 2 s), and the association's object list (no
goal: what a client reads once to discover the objects), read by Gurux's client over a real
loopback socket, the store real (LMDB in a temporary directory, the newest cycles of ten
values a meter), the service as the gateway runs it. The figure is the median of ``--repeat``
runs after one warm-up. No peer publishes DLMS server timings to compare with.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import trio

from bench.dlms_client import DlmsClient
from bench.service_bench import run_in_tempdir, service_gateway
from mbusgw.gateway.services.dlms.obis import channel
from mbusgw.gateway.services.dlms.service import DlmsService

SMOKE_ARGV = ["--meters=4", "--repeat=1"]
GOAL_S = 2.0


def _read_all(port: int, meters: int, repeat: int) -> dict[str, list[float] | int]:
    """Seconds per pass over every meter's main register, and how many had a value; seconds
    per fetch of the object list (in blocks of Gurux's default PDU size; Gurux's parse of it,
    some 2 ms an object, is left out), and its length in bytes."""
    client = DlmsClient(port)
    codes = [f"0.{b}.24.2.1.{f}" for b, f in map(channel, range(1, meters + 1))]
    found: dict[str, list[float] | int] = {"registers": [], "objects": []}
    try:
        client.associate()
        for run in range(repeat + 1):
            started = time.perf_counter()
            found["with_value"] = sum(client.register(code).value is not None for code in codes)
            registers_s = time.perf_counter() - started
            started = time.perf_counter()
            found["list_bytes"] = len(client.object_list_data())
            objects_s = time.perf_counter() - started
            if run:
                found["registers"].append(registers_s)  # type: ignore[union-attr]
                found["objects"].append(objects_s)  # type: ignore[union-attr]
        client.release()
    finally:
        client.close()
    return found


async def _bench(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = {"dlms": {"enabled": True, "host": "127.0.0.1", "port": 0}}
    results: dict[str, Any] = {"meters": args.meters}
    async with service_gateway(workdir, args.meters, settings) as (gateway, nursery):
        _, port = await nursery.start(DlmsService(gateway).run)
        found = await trio.to_thread.run_sync(_read_all, port, args.meters, args.repeat)
    results["main_registers_s"] = round(statistics.median(found["registers"]), 3)  # type: ignore[arg-type]
    results["registers_with_value"] = found["with_value"]
    results["object_list_s"] = round(statistics.median(found["objects"]), 3)  # type: ignore[arg-type]
    results["object_list_bytes"] = found["list_bytes"]
    return results


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_dlms")
    parser.add_argument("--meters", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    args, _ = parser.parse_known_args([a for a in argv if a.startswith("--")])
    results = run_in_tempdir("dlms", _bench, args)
    print(f"{'workload':<36}{'median s':>10}{'count':>12}{'goal s':>8}")
    label = f"main registers ({args.meters} meters)"
    value, found = results["main_registers_s"], results["registers_with_value"]
    print(f"{label:<36}{value:>10.3f}{found:>12}{GOAL_S:>8}")
    value, found = results["object_list_s"], results["object_list_bytes"]
    print(f"{'object list (bytes)':<36}{value:>10.3f}{found:>12}{'-':>8}")
    return results
