"""What the device is and how it runs: name, version, addresses, uptime, lines, meter counts and
services (the API, JSON-RPC, the pages, the terminal, metrics and reports read the same)."""

from __future__ import annotations

import dataclasses
import platform
import socket
from typing import Any

from mbusgw.gateway.facade import GatewayHandle
from mbusgw.web.operations import health_of


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("mbusgw")
    except PackageNotFoundError:
        return "unknown"


def network_addresses() -> list[dict[str, str]]:
    """The host's addresses (what a field engineer types into a browser)."""
    found = []
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        infos = []
    for family, _, _, _, address in infos:
        text = address[0]
        entry = {"interface": socket.gethostname(), "address": text, "family": family.name}
        if entry not in found:
            found.append(entry)
    return found


def device_info(gw: GatewayHandle) -> dict[str, Any]:
    now = gw.clock.now()
    identity = gw.settings.identity
    return {
        "name": identity.device_name,
        "contact": identity.contact,
        "version": version(),
        "hostname": socket.gethostname(),
        "now": now.isoformat(timespec="seconds"),
        "started_at": gw.started_at.isoformat(timespec="seconds"),
        "uptime_s": round((now - gw.started_at).total_seconds(), 3),
        "timezone": gw.settings.timezone,
        "capacity": gw.settings.capacity,
        "python": platform.python_version(),
        "addresses": network_addresses(),
    }


def meter_counts(gw: GatewayHandle) -> dict[str, int]:
    counts = {"installed": 0, "active": 0, "passive": 0, "ok": 0, "failed": 0, "never": 0}
    for meter in gw.meters:
        counts["installed"] += 1
        counts["active" if meter.active else "passive"] += 1
        if meter.active:
            counts[health_of(gw, meter.key).status] += 1
    return counts


def device_status(gw: GatewayHandle) -> dict[str, Any]:
    counts = meter_counts(gw)
    services = [
        {
            "name": s.name,
            "state": s.state,
            "restarts": s.restarts,
            "crashes": s.crashes,
            "last_error": s.last_error,
        }
        for s in gw.supervisor.states.values()
    ]
    if counts["active"] and counts["failed"] == counts["active"]:
        status = "error"
    elif counts["failed"] or any(s["state"] == "waiting" for s in services):
        status = "warning"
    else:
        status = "ok"
    store = dataclasses.asdict(gw.store.stats())
    store.pop("tables", None)
    return {
        "status": status,
        "meters": counts,
        "services": services,
        "store": store,
        "continuous": gw.settings.reading.continuous,
    }
