"""``/metrics`` over real HTTP from a running gateway on a simulated line, parsed with the
Prometheus client's own text parser: its numbers are the REST API's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from webrig import SERVED_ADMIN, served_gateway

from mbusgw.gateway.settings import InterfaceConfig

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=3)


async def scrape(http: httpx.AsyncClient, **options: Any) -> dict[str, dict[tuple, float]]:
    """The families' samples by name, each by its sorted labels."""
    response = await http.get("/metrics", **options)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def by_meter(samples: dict[tuple, float]) -> dict[str, float]:
    return {dict(labels)["meter"]: value for labels, value in samples.items()}


async def test_metrics_equal_the_health_the_rest_api_shows(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with served_gateway(tmp_path, LINE) as (gateway, http):
            await gateway.update_settings({"mbus": {"timing": {"read_retries": 0}}})
            simulated = gateway.simulators["sim1"].line.meters
            simulated[1].silent = True
            await gateway.read_all()
            simulated[1].silent = False
            await gateway.read_all()
            simulated[2].silent = True
            await gateway.read_all()
            metrics = await scrape(http, auth=SERVED_ADMIN)
            meters = (await http.get("/api/v1/meters", auth=SERVED_ADMIN)).json()["meters"]
            status = (await http.get("/api/v1/device/status", auth=SERVED_ADMIN)).json()

    codes = {"ok": 1, "never": 2, "failed": 3}
    health = {m["key"]: m["health"] for m in meters}
    assert by_meter(metrics["mbusgw_meter_status"]) == {
        key: codes[h["status"]] for key, h in health.items()
    }
    assert set(by_meter(metrics["mbusgw_meter_status"]).values()) == {1, 3}
    assert by_meter(metrics["mbusgw_meter_readings_total"]) == {
        key: h["readings"] for key, h in health.items()
    }
    assert by_meter(metrics["mbusgw_meter_failures_total"]) == {
        key: h["failures"] for key, h in health.items()
    }
    assert by_meter(metrics["mbusgw_meter_success_ratio"]) == {
        key: h["success_rate"] for key, h in health.items()
    }
    assert by_meter(metrics["mbusgw_meter_retries"]) == {
        key: h["last_retries"] for key, h in health.items()
    }
    assert by_meter(metrics["mbusgw_meter_response_seconds"]) == {
        key: h["last_response_ms"] / 1000 for key, h in health.items()
    }
    assert metrics["mbusgw_status"][()] == 2  # one of three meters failed: a warning
    assert status["status"] == "warning"
    assert {dict(k)["state"]: v for k, v in metrics["mbusgw_meters"].items()} == status["meters"]
    services = {s["name"]: s for s in status["services"]}
    running = {dict(k)["service"]: v for k, v in metrics["mbusgw_service_running"].items()}
    assert running == {name: float(s["state"] == "running") for name, s in services.items()}
    assert metrics["mbusgw_store_readings"][()] == status["store"]["readings"]
    assert metrics["mbusgw_line_meters"][(("line", "sim1"),)] == 3
    assert metrics["mbusgw_line_busy_seconds_total"][(("line", "sim1"),)] > 0
    assert "mbusgw_meter_value" not in metrics  # per-meter values are off by default


async def test_metrics_token_meter_values_and_refusals(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with served_gateway(tmp_path, LINE) as (gateway, http):
            assert (await http.get("/metrics")).status_code == 401
            wrong = {"Authorization": "Bearer not-the-token"}
            assert (await http.get("/metrics", headers=wrong)).status_code == 401
            token = "scrape-" + "x" * 24
            await gateway.update_settings({"metrics": {"token": token, "meter_values": True}})
            shown = (await http.get("/api/v1/settings", auth=SERVED_ADMIN)).json()
            assert token not in str(shown)
            assert (await http.get("/metrics", headers=wrong)).status_code == 401
            result = await gateway.read_all()
            assert not result.failed
            metrics = await scrape(http, headers={"Authorization": f"Bearer {token}"})
            key = gateway.meters[0].key
            values = (await http.get(f"/api/v1/meters/{key}", auth=SERVED_ADMIN)).json()
            expected = {
                v["series"]: float(v["value"])
                for v in values["latest"]["values"]
                if isinstance(v["value"], int | float) and not v.get("invalid")
            }
            gauges = {
                int(dict(k)["series"]): v
                for k, v in metrics["mbusgw_meter_value"].items()
                if dict(k)["meter"] == key
            }
            assert gauges and all(gauges[s] == expected[s] for s in gauges)
            await gateway.update_settings({"metrics": {"enabled": False}})
            assert (await http.get("/metrics", auth=SERVED_ADMIN)).status_code == 404
