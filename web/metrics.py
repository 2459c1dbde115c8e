"""Prometheus metrics at ``/metrics`` (text exposition format 0.0.4).

Every number is taken from what the REST API shows (``operations.device_status``, the meters'
health, the report status), so a dashboard and the API cannot disagree. Store growth is
``rate(mbusgw_store_used_bytes[1d])`` on the scraper's side. Who may scrape: any account or API
token of the API, or the metrics' own bearer token (setting ``metrics.token``).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from quart import Blueprint, Response, g

from mbusgw.gateway.facade import GatewayHandle
from mbusgw.web import device_ops
from mbusgw.web import operations as ops
from mbusgw.web.auth import own_token
from mbusgw.web.errors import NotFound, Unauthorized
from mbusgw.web.state import state
from mbusgw.web.values import latest_by_meter

blueprint = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
AGGREGATE = {"ok": 1, "warning": 2, "error": 3}  # the SNMP agent's codes
METER_STATUS = {"ok": 1, "never": 2, "failed": 3}


def is_metrics_token(sent: str) -> bool:
    """``sent`` is the metrics' own bearer token (compared in constant time)."""
    token = state().gateway.settings.metrics.token
    return bool(token) and hmac.compare_digest(sent.encode(), token.encode())


@blueprint.get("/metrics")
@own_token(is_metrics_token)
async def metrics() -> Response:
    gw = state().gateway
    if not gw.settings.metrics.enabled:
        raise NotFound("the metrics are switched off (setting metrics.enabled)")
    user = g.get("user")
    if g.get("via") != "own_token" and (user is None or user.must_change):
        raise Unauthorized("send an API token, basic credentials or the metrics token")
    return Response(exposition(gw), content_type=CONTENT_TYPE)


def _label(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | int | None) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Exposition:
    """Families written one after another, each with its HELP and TYPE lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        text: str,
        samples: Iterable[tuple[dict[str, object], float | int | None]],
    ) -> None:
        self.lines.append(f"# HELP {name} {text}")
        self.lines.append(f"# TYPE {name} {kind}")
        sample_name = f"{name}_total" if kind == "counter" else name
        for labels, value in samples:
            if labels:
                inside = ",".join(f'{key}="{_label(v)}"' for key, v in labels.items())
                self.lines.append(f"{sample_name}{{{inside}}} {_number(value)}")
            else:
                self.lines.append(f"{sample_name} {_number(value)}")

    def one(self, name: str, kind: str, text: str, value: float | int | None) -> None:
        self.family(name, kind, text, [({}, value)])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def exposition(gw: GatewayHandle) -> str:
    out = Exposition()
    info = device_ops.device_info(gw)
    status = device_ops.device_status(gw)
    out.family(
        "mbusgw_info",
        "gauge",
        "The gateway's name and version (always 1).",
        [({"name": info["name"], "version": info["version"]}, 1)],
    )
    out.one(
        "mbusgw_uptime_seconds", "gauge", "Seconds since the gateway started.", info["uptime_s"]
    )
    out.one(
        "mbusgw_status",
        "gauge",
        "Aggregate status: 1 ok, 2 warning (some meters or services failed), 3 error (all failed).",
        AGGREGATE[status["status"]],
    )
    out.family(
        "mbusgw_meters",
        "gauge",
        "Meters by state (installed, active, passive) and by health of the active ones.",
        [({"state": state_name}, count) for state_name, count in status["meters"].items()],
    )
    _services(out, status["services"])
    _lines(out, gw)
    _meters(out, gw)
    _store(out, status["store"])
    _reports(out, gw)
    _modbus(out, gw)
    out.one(
        "mbusgw_events_dropped",
        "counter",
        "Events a slow subscriber did not receive.",
        gw.events.dropped,
    )
    if gw.settings.metrics.meter_values:
        _meter_values(out, gw)
    return out.text()


def _services(out: Exposition, services: list[dict[str, Any]]) -> None:
    out.family(
        "mbusgw_service_running",
        "gauge",
        "1 while the supervised service runs, else 0.",
        [({"service": s["name"]}, s["state"] == "running") for s in services],
    )
    out.family(
        "mbusgw_service_restarts",
        "counter",
        "Restarts of each supervised service.",
        [({"service": s["name"]}, s["restarts"]) for s in services],
    )
    out.family(
        "mbusgw_service_crashes",
        "counter",
        "Crashes of each supervised service.",
        [({"service": s["name"]}, s["crashes"]) for s in services],
    )


def _lines(out: Exposition, gw: GatewayHandle) -> None:
    per_line: dict[str, int] = dict.fromkeys(gw.lines, 0)
    for meter in gw.meters:
        if meter.active and meter.interface in per_line:
            per_line[meter.interface] += 1
    out.family(
        "mbusgw_line_meters",
        "gauge",
        "Active meters on each wired line.",
        [({"line": name}, count) for name, count in per_line.items()],
    )
    out.family(
        "mbusgw_line_busy_seconds",
        "counter",
        "Seconds each wired line was busy reading meters (occupancy: its rate).",
        [({"line": name}, getattr(line, "busy_s", 0.0)) for name, line in gw.lines.items()],
    )


def _meters(out: Exposition, gw: GatewayHandle) -> None:
    now = gw.clock.now()
    rows = [(meter, ops.health_of(gw, meter.key)) for meter in gw.meters if meter.active]

    def labels(meter: Any) -> dict[str, object]:
        return {"meter": meter.key, "position": meter.position}

    out.family(
        "mbusgw_meter_status",
        "gauge",
        "1 last read ok, 2 never read, 3 last read failed.",
        [(labels(m), METER_STATUS[h.status]) for m, h in rows],
    )
    out.family(
        "mbusgw_meter_readings",
        "counter",
        "Readings attempted since start.",
        [(labels(m), h.readings) for m, h in rows],
    )
    out.family(
        "mbusgw_meter_failures",
        "counter",
        "Failed readings since start.",
        [(labels(m), h.failures) for m, h in rows],
    )
    out.family(
        "mbusgw_meter_success_ratio",
        "gauge",
        "Share of good readings among the recent ones (NaN before the first).",
        [(labels(m), h.success_rate) for m, h in rows],
    )
    out.family(
        "mbusgw_meter_seconds_since_last_good",
        "gauge",
        "Seconds since the last good reading (NaN: none yet).",
        [
            (labels(m), (now - h.last_good).total_seconds() if h.last_good else None)
            for m, h in rows
        ],
    )
    out.family(
        "mbusgw_meter_response_seconds",
        "gauge",
        "Response time of the last good reading.",
        [
            (labels(m), h.last_response_ms / 1000 if h.last_response_ms is not None else None)
            for m, h in rows
        ],
    )
    out.family(
        "mbusgw_meter_retries",
        "gauge",
        "Retries the last reading needed.",
        [(labels(m), h.last_retries) for m, h in rows],
    )


def _store(out: Exposition, store: dict[str, Any]) -> None:
    for field, text in (
        ("file_bytes", "Size of the store file."),
        ("used_bytes", "Bytes in use in the store (growth: its rate)."),
        ("map_bytes", "The store's map size (its upper bound)."),
        ("log_bytes", "Bytes of the system log."),
    ):
        out.one(f"mbusgw_store_{field}", "gauge", text, store[field])
    for field, text in (
        ("readings", "Readings stored."),
        ("values", "Values stored."),
        ("rows_waiting", "Readings not compacted yet."),
    ):
        out.one(f"mbusgw_store_{field}", "gauge", text, store[field])


def _reports(out: Exposition, gw: GatewayHandle) -> None:
    reports = gw.reports.status() if gw.reports is not None else []
    out.family(
        "mbusgw_report_status",
        "gauge",
        "1 last report delivered, 2 none sent yet, 3 the last one failed.",
        [({"report": r.name}, r.code) for r in reports],
    )
    out.family(
        "mbusgw_report_values_pending",
        "gauge",
        "Values a report could not deliver yet (its backlog).",
        [({"report": r.name}, r.values_pending) for r in reports],
    )
    out.family(
        "mbusgw_report_last_success_timestamp_seconds",
        "gauge",
        "Time of the report's last delivery (NaN: none yet).",
        [
            ({"report": r.name}, r.last_success.timestamp() if r.last_success else None)
            for r in reports
        ],
    )


def _modbus(out: Exposition, gw: GatewayHandle) -> None:
    stats = gw.modbus.stats if gw.modbus is not None else None
    out.one(
        "mbusgw_modbus_connections",
        "gauge",
        "Open Modbus TCP sessions.",
        stats.connections if stats else 0,
    )
    out.one(
        "mbusgw_modbus_requests",
        "counter",
        "Modbus requests answered.",
        stats.requests if stats else 0,
    )


def _meter_values(out: Exposition, gw: GatewayHandle) -> None:
    meters = [m for m in gw.meters if m.active]
    latest = latest_by_meter(gw, [m.key for m in meters])
    samples = []
    for meter in meters:
        for value in latest.get(meter.key, {}).get("values", []):
            number = value["value"]
            if (
                value.get("invalid")
                or isinstance(number, bool)
                or not isinstance(number, int | float | Decimal)
            ):
                continue  # dates, texts and invalid values have no gauge
            labels = {
                "meter": meter.key,
                "series": value["series"],
                "quantity": value["quantity"],
                "unit": value["unit"],
            }
            samples.append((labels, float(number)))
    out.family(
        "mbusgw_meter_value",
        "gauge",
        "Each meter's latest value of each series (setting metrics.meter_values).",
        samples,
    )
