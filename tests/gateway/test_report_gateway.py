"""Reports in the running gateway: simulated meters read and decoded, reports configured
through the gateway's settings, delivered to an HTTP receiver (real time, loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from report_receivers import HttpReceiver, start_http_receiver

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig

QUIET = {"modbus": {"enabled": False}, "reading": {"schedule": "0 0 1 1 *", "read_at_start": False}}


async def test_an_on_demand_report_in_the_gateway(tmp_path: Path) -> None:
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=3),)
    receiver = HttpReceiver()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            stop = await start_http_receiver(nursery, receiver)
            gateway = Gateway(StartupConfig(tmp_path, interfaces=interfaces))
            await nursery.start(gateway.run)
            await gateway.update_settings(
                QUIET
                | {
                    "identity": {"device_name": "plant-3", "contact": "ops@example.com"},
                    "reports": {
                        "http": {"uri": receiver.url},
                        "reports": {
                            "now": {"kind": "on_demand", "template": 3130},
                            "daily": {"schedule": "daily", "template": 3101},
                        },
                    },
                }
            )
            assert gateway.reports is not None
            outcome = await gateway.reports.run_on_demand("now")
            statuses = {s.name: s for s in gateway.reports.status()}
            gateway.stop()
            stop.set()
    assert outcome.ok and statuses["now"].code == 1
    assert statuses["daily"].code == 2 and statuses["daily"].next_run is not None
    [report] = [json.loads(r.body) for r in receiver.requests if b'"meters"' in r.body]
    assert report["device"] == {"name": "plant-3", "contact": "ops@example.com"}
    meters = {m["meter"]: m for m in report["meters"]}
    assert sorted(meters) == sorted(m.key for m in gateway.meters)
    first = next(iter(meters.values()))
    assert first["secondary_address"] and first["series"]
    assert all(s["values"] for s in first["series"])
