"""Settings of the clock watch and the SNTP check (manual 6.3; docs/time.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mbusgw.gateway.settings_fields import _bounded, _checked, _parses


def sntp_servers(text: str) -> list[tuple[str, int]]:
    """``host`` or ``host:port`` entries (``[v6]:port`` for IPv6), space or comma separated;
    ValueError names the first bad one."""
    servers = []
    for entry in text.replace(",", " ").split():
        host, port = entry, "123"
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = rest.removeprefix(":") or "123"
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} is not a host or host:port")
        servers.append((host, int(port)))
    return servers


@dataclass(frozen=True)
class TimeSettings:
    max_drift_s: int = _bounded(
        5, 1, 86_400, note="a wall-clock step or drift beyond this (against monotonic) is logged"
    )
    check_interval_s: int = _bounded(60, 1, 3600, note="how often the two clocks are compared")
    sntp_servers: str = _checked(
        "",
        _parses(sntp_servers),
        max_length=1024,
        note="SNTP servers to compare with; empty = none",
    )
    sntp_schedule: str = field(default="hourly", metadata={"cron": True})
