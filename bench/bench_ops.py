"""The operators' services with 512 meters (issue 16 goals):

- ``/metrics`` (goal ≤ 50 ms), through the app in-process like ``bench_web``;
- ``snmpwalk`` of the whole meter table from net-snmp over loopback UDP (goal ≤ 1 s);
- MQTT: one cycle's 512 readings, with their retained series, published at QoS 1 to a local
  mosquitto and acknowledged, the cursors committed (goal ≤ 1 s): the first cycle after the
  connection (each series' Home Assistant discovery config goes out with it, once) and the
  next one (the steady state, the goal's).

The store is real (LMDB in a temporary directory) with ``--cycles`` cycles of the fleet; the
health of every meter is filled. No peer: the reference device has none of these services.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from bench.bench_web import YEAR_START, BenchGateway, FixedClock, _meter
from bench.store_data import SLOT, make_fleet
from mbusgw.gateway.events import READINGS_STORED, Event
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.mqtt_settings import MqttSettings
from mbusgw.gateway.services.mqtt.service import CURSOR, MqttService
from mbusgw.gateway.services.snmp.objects import GatewayView
from mbusgw.gateway.services.snmp.service import SnmpService
from mbusgw.gateway.settings import StartupConfig
from mbusgw.gateway.snmp_settings import SnmpSettings
from mbusgw.gateway.store import Store, StoreWriter
from mbusgw.web.app import create_app

SMOKE_ARGV = ["--meters=8", "--repeat=1"]
GOALS_MS = {
    "metrics_512": 50.0,
    "snmpwalk_meter_table_512": 1000.0,
    "snmpbulkwalk_meter_table_512": 1000.0,
    "mqtt_first_cycle_512": None,
    "mqtt_cycle_512": 1000.0,
}


class OpsGateway(BenchGateway):
    reports: Any = None
    modbus: Any = None
    snmp: Any = None
    mqtt: Any = None


def _log(level: int, origin: str, text: str) -> None:
    if level > 0:
        print(f"  {origin}: {text}")


async def _metrics(gateway: OpsGateway, repeat: int) -> float:
    app = create_app(gateway)
    async with app.test_app():
        users = app.extensions["mbusgw"].auth.users
        await users.complete_first_login("admin", "benchmark1", "Bench2024x")
        token = await users.create_token("benchmark1", "bench")
        client = app.test_client()
        samples = []
        for run in range(repeat + 1):
            started = time.perf_counter()
            response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            await response.get_data()
            if run:
                samples.append(time.perf_counter() - started)
            assert response.status_code == 200
    return statistics.median(samples) * 1000


async def _snmpwalk(view: GatewayView, events: Any, repeat: int, tool: str) -> float:
    settings = SnmpSettings(enabled=True, host="127.0.0.1", port=0, community="bench")
    service = SnmpService(lambda: settings, view, events, _log)
    samples = []
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(service.run)
        argv = [tool, "-v2c", "-c", "bench", "-On", "-m", "", f"{host}:{port}",
                ".1.3.6.1.4.1.99999.1.2"]  # fmt: skip
        for run in range(repeat + 1):
            started = time.perf_counter()
            done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True)
            if run:
                samples.append(time.perf_counter() - started)
        printed = done.stdout.decode().splitlines()
        lines = sum(1 for line in printed if " = " in line and "No more variables" not in line)
        assert lines == 4 * len(view.meters()), lines
        nursery.cancel_scope.cancel()
    return statistics.median(samples) * 1000


async def _mqtt(
    store: Store, writer: StoreWriter, view: GatewayView, events: Any, fleet: Any, folder: Path
) -> list[float]:
    """The milliseconds of the first cycle after the connection and of the next."""
    port = _free_port()
    config = folder / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "max_queued_messages 0"]
    if os.geteuid() == 0:
        lines.append("user root")
    config.write_text("\n".join(lines) + "\n")
    settings = MqttSettings(enabled=True, host="127.0.0.1", port=port, client_id="bench")
    clock = FixedClock(YEAR_START)
    # the earlier cycles went out before: the cursors are at the newest stored reading
    stored = fleet.cycle(fleet.cycles - 3, frames=False)
    cursors = {r.meter: [int(r.received_at), 1] for r in stored}  # one reading a second
    await writer.put_record("cursors", CURSOR, {"meters": cursors, "start": YEAR_START})
    service = MqttService(lambda: settings, view, store, writer, events, clock, _log)
    elapsed = []
    async with trio.open_nursery() as nursery:
        broker = await nursery.start(
            lambda task_status: trio.run_process(
                ["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, check=False, task_status=task_status,
            )
        )  # fmt: skip
        await trio.sleep(0.3)
        await nursery.start(service.run)
        while not service.status.connected:
            await trio.sleep(0.01)
        await trio.sleep(0.5)  # the gateway's own messages of the start are out
        for c in (fleet.cycles - 2, fleet.cycles - 1):
            cycle = fleet.cycle(c, frames=False)
            await writer.put_readings(cycle)
            wanted = {r.meter: [int(r.received_at), 1] for r in cycle}
            started, cpu = time.perf_counter(), time.process_time()
            events.publish(Event(READINGS_STORED, datetime.now(UTC), None,
                                 {"meters": [r.meter for r in cycle]}))  # fmt: skip
            while True:
                record = store.record("cursors", CURSOR) or {}
                done = record.get("meters", {})
                if all(done.get(key, [0, 0]) >= at for key, at in wanted.items()):
                    break
                await trio.sleep(0.002)
            elapsed.append((time.perf_counter() - started) * 1000)
            # the gateway's processor time: what the cycle costs, whatever else the machine runs
            print(f"  MQTT: {service.status.published} messages published, "
                  f"{service.status.acknowledged} acknowledged; the cycle took "
                  f"{(time.process_time() - cpu) * 1000:.0f} ms of processor time")  # fmt: skip
        broker.terminate()
        nursery.cancel_scope.cancel()
    return elapsed


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _bench(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    clock = FixedClock(YEAR_START)
    store = Store.open(workdir / "store.mdb", clock=clock)
    fleet = make_fleet(args.meters, 3, YEAR_START, seed=5)
    writer = StoreWriter(store)
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for c in range(fleet.cycles - 2):  # the last two: the MQTT cycles
            await writer.put_readings(fleet.cycle(c, frames=False))
        clock.time = YEAR_START + fleet.cycles * SLOT
        meters = [_meter(key, i) for i, key in enumerate(fleet.names)]
        health = {}
        for i, meter in enumerate(meters):
            record = health[meter.key] = MeterHealth(meter.key)
            record.record(clock.now(), i % 17 != 0, retries=i % 3, response_ms=180.0 + i)
        startup = StartupConfig(data_dir=workdir)
        gateway = OpsGateway(store, writer, startup, clock, meters)
        gateway.health = health
        view = GatewayView(lambda: "bench", "bench", lambda: 3600.0, lambda: meters, health,
                           lambda: [])  # fmt: skip
        events = gateway.events
        results["metrics_512_ms"] = round(await _metrics(gateway, args.repeat), 2)
        print(f"  /metrics: {results['metrics_512_ms']} ms", flush=True)
        for tool in ("snmpwalk", "snmpbulkwalk"):
            walk_ms = await _snmpwalk(view, events, args.repeat, tool)
            results[f"{tool}_meter_table_512_ms"] = round(walk_ms, 1)
            print(f"  {tool}: {walk_ms:.1f} ms", flush=True)
        first_ms, steady_ms = await _mqtt(store, writer, view, events, fleet, workdir)
        results["mqtt_first_cycle_512_ms"] = round(first_ms, 1)
        results["mqtt_cycle_512_ms"] = round(steady_ms, 1)
        writer.close()
    store.close()
    return results


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_ops")
    parser.add_argument("--meters", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    args, _ = parser.parse_known_args([a for a in argv if a.startswith("--")])
    with tempfile.TemporaryDirectory(prefix="mbusgw-bench-ops-", ignore_cleanup_errors=True) as tmp:
        results = trio.run(_bench, Path(tmp), args)
    print(f"{'workload':<30}{'median ms':>12}{'goal ms':>10}")
    for key, value in results.items():
        name = key.removesuffix("_ms")
        goal = GOALS_MS.get(name)
        print(f"{name:<30}{value:>12.2f}{goal or '-':>10}")
    return results
