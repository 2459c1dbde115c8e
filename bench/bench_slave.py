"""Virtual and transparent M-Bus under load (docs/slave.md).

- ``virtual``: a gateway with ``--meters`` simulated meters read into its store serves the
  virtual M-Bus; ``--masters`` masters (in a separate process, one connection each) poll their
  meter with REQ_UD2, toggling the FCB, for ``--seconds``: "paced", each on its own cycle of
  ``--period-ms`` (a PLC's polling), and "saturated", each asking again as soon as it has its
  answer. Goal: p99 ≤ 5 ms with 32 masters (a physical meter at 2400 baud needs ≈ 430 ms for
  the same telegram).
- ``transparent``: one master reads a simulated meter at 38400 baud directly (the simulator's
  own TCP port, the way a converter is reached) and through the gateway's transparent M-Bus
  (packing "M-Bus", ``--packing-ms``). Goal: the added round trip ≤ the packing interval + 2 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from mbusgw.core.frame import FrameParser, req_ud2, snd_nke
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.services.transparent import TransparentMBusService, transparent_mbus_1
from mbusgw.gateway.services.vmbus import VirtualMBusService, virtual_mbus_service
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.gateway.simulator import SimLine, default_meters
from mbusgw.gateway.simulator.serve import serve_tcp
from mbusgw.gateway.store import Store, store_path

SMOKE_ARGV = ["--seconds", "0.3", "--masters", "2", "--meters", "2", "--rounds", "5"]
QUIET = {"reading": {"schedule": "0 0 1 1 *", "read_at_start": False}, "modbus": {"enabled": False}}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


async def answer_of(stream: trio.SocketStream, request: bytes) -> bytes:
    """Send ``request`` and read until one complete frame (or the single E5) came back."""
    await stream.send_all(request)
    parser = FrameParser()
    got = b""
    while True:
        data = await stream.receive_some(4096)
        if not data:
            raise ConnectionError("closed")
        got += data
        parser.feed(data)
        if parser.events():
            return got


# ------------------------------------------------------------------ the masters' process


async def poll(port: int, address: int, until: float, period: float, times: list[float]) -> None:
    """One master: REQ_UD2 every ``period`` seconds (0: as soon as the answer is in)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await answer_of(stream, snd_nke(address))
        fcb = True
        due = time.perf_counter()
        while time.perf_counter() < until:
            start = time.perf_counter()
            await answer_of(stream, req_ud2(address, fcb=fcb))
            times.append(time.perf_counter() - start)
            fcb = not fcb
            if period:
                due += period
                await trio.sleep(max(0.0, due - time.perf_counter()))


async def masters(port: int, addresses: list[int], seconds: float, period: float) -> list[float]:
    times: list[float] = []
    until = time.perf_counter() + seconds
    async with trio.open_nursery() as nursery:
        for k, address in enumerate(addresses):
            await trio.sleep(period * k / len(addresses))  # PLCs on their own cycles
            nursery.start_soon(poll, port, address, until, period, times)
    return times


def run_masters(port: int, addresses: list[int], seconds: float, period: float) -> list[float]:
    """The masters in their own process (they must not share the gateway's interpreter)."""
    job = json.dumps({"port": port, "addresses": addresses, "seconds": seconds, "period": period})
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_slave", "--masters-process", job],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(done.stdout)


# ------------------------------------------------------------------ the gateway's side


async def virtual(args: argparse.Namespace) -> dict:
    made: list[VirtualMBusService] = []

    def factory(gateway: Gateway) -> VirtualMBusService:
        made.append(virtual_mbus_service(gateway))
        return made[-1]

    with tempfile.TemporaryDirectory() as data_dir:
        _seed(Path(data_dir), {"slave": {"virtual": {"enabled": True, "host": "127.0.0.1",
                                                     "port": 0}}})  # fmt: skip
        line = InterfaceConfig(name="a", kind="simulator", baud=38400, meters=args.meters)
        gateway = Gateway(StartupConfig(Path(data_dir), interfaces=(line,)), northbound=[factory])
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            await gateway.read_all()
            service = made[0]
            while not all(m.frames for m in service.book.directory.meters.values()):
                await trio.sleep(0.05)
            primaries = [m.primary_address for m in gateway.meters if m.primary_address]
            addresses = [primaries[i % len(primaries)] for i in range(args.masters)]
            assert service.port is not None
            out = {"masters": args.masters, "goal_p99_ms": 5.0}
            for scenario, period in (("paced", args.period_ms / 1000), ("saturated", 0.0)):
                times = await trio.to_thread.run_sync(
                    run_masters, service.port, addresses, args.seconds, period
                )
                out[scenario] = {
                    "requests_per_s": len(times) / args.seconds,
                    "p50_ms": percentile(times, 0.5) * 1000,
                    "p99_ms": percentile(times, 0.99) * 1000,
                }
            gateway.stop()
    return out


async def round_trips(port: int, address: int, rounds: int) -> list[float]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    times = []
    async with stream:
        await answer_of(stream, snd_nke(address))
        fcb = True
        for _ in range(rounds):
            start = trio.current_time()
            await answer_of(stream, req_ud2(address, fcb=fcb))
            times.append(trio.current_time() - start)
            fcb = not fcb
    return times


async def transparent(args: argparse.Namespace) -> dict:
    made: list[TransparentMBusService] = []

    def factory(gateway: Gateway) -> TransparentMBusService:
        made.append(transparent_mbus_1(gateway))
        return made[-1]

    relay = {"enabled": True, "host": "127.0.0.1", "port": 0, "line": "conv",
             "packing": "mbus", "packing_interval_ms": args.packing_ms}  # fmt: skip
    with tempfile.TemporaryDirectory() as data_dir:
        _seed(Path(data_dir), {"slave": {"transparent_1": relay}})
        async with trio.open_nursery() as nursery:
            # the same meters behind two converters: one the gateway uses, one read directly
            sims = [SimLine(default_meters(1, seed=5), 38400) for _ in range(2)]
            ports = [await nursery.start(serve_tcp, sim, "127.0.0.1", 0) for sim in sims]
            line = InterfaceConfig(name="conv", kind="tcp", host="127.0.0.1", port=ports[0],
                                   baud=38400)  # fmt: skip
            gateway = Gateway(StartupConfig(Path(data_dir), interfaces=(line,)),
                              northbound=[factory])  # fmt: skip
            await nursery.start(gateway.run)
            address = sims[0].meters[0].primary
            assert address is not None and made[0].port is not None
            direct = await round_trips(ports[1], address, args.rounds)
            through = await round_trips(made[0].port, address, args.rounds)
            gateway.stop()
            nursery.cancel_scope.cancel()
    added = statistics.median(through) - statistics.median(direct)
    return {
        "rounds": args.rounds,
        "direct_median_ms": statistics.median(direct) * 1000,
        "through_median_ms": statistics.median(through) * 1000,
        "added_median_ms": added * 1000,
        "goal_added_ms": args.packing_ms + 2.0,
    }


def _seed(data_dir: Path, slave: dict) -> None:
    store = Store.open(store_path(data_dir))
    try:
        store.update_settings({**QUIET, **slave})
    finally:
        store.close()


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_slave")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--masters", type=int, default=32)
    parser.add_argument("--meters", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--packing-ms", type=int, default=5)
    parser.add_argument("--period-ms", type=float, default=50.0, help="paced: each master's cycle")
    args, _ = parser.parse_known_args(argv)
    results = {"virtual": trio.run(virtual, args), "transparent": trio.run(transparent, args)}
    v, t = results["virtual"], results["transparent"]
    for scenario in ("paced", "saturated"):
        r = v[scenario]
        rate, p50, p99 = r["requests_per_s"], r["p50_ms"], r["p99_ms"]
        print(f"virtual M-Bus, {v['masters']} masters {scenario}: {rate:.0f} REQ_UD2/s, "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (goal ≤ 5 ms)")  # fmt: skip
    print(f"transparent M-Bus at 38400 Bd: direct {t['direct_median_ms']:.1f} ms, through "
          f"{t['through_median_ms']:.1f} ms, added {t['added_median_ms']:.1f} ms "
          f"(goal ≤ {t['goal_added_ms']:.0f} ms)")  # fmt: skip
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--masters-process"]:
        job = json.loads(sys.argv[2])
        times = trio.run(masters, job["port"], job["addresses"], job["seconds"], job["period"])
        print(json.dumps(times))
    else:
        main(sys.argv[1:])
