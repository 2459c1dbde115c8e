"""The start page's panel: what needs attention at a glance (meters that failed or were never
read, the last and next reading, reports that failed, services that are not running), each
with a link to where it is dealt with; and the read schedule's next runs in words."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from mbusgw.gateway.cron import PREDEFINED, CronSchedule, CronSyntaxError
from mbusgw.gateway.facade import GatewayHandle
from mbusgw.web.device_ops import meter_counts
from mbusgw.web.operations import health_of
from mbusgw.web.settings_form import words

PREVIEW_RUNS = 3


@dataclass
class Panel:
    counts: dict[str, int]
    last_read: datetime | None
    next_read: datetime | None
    reports: dict[str, int] = field(default_factory=dict)  # delivered / failed / not sent
    failed_reports: list[str] = field(default_factory=list)
    services: int = 0
    troubled_services: list[dict[str, Any]] = field(default_factory=list)


def next_runs(
    expression: str, seed: str, zone: tzinfo, now: datetime, count: int = PREVIEW_RUNS
) -> tuple[list[datetime], str]:
    """The next ``count`` runs of a read schedule (as the scheduler draws its random parts),
    or the reason it is no schedule."""
    try:
        return CronSchedule(expression, seed=seed).fire_times(now, count, zone), ""
    except (CronSyntaxError, ValueError) as exc:
        return [], str(exc)


def schedule_words(expression: str) -> str:
    """A predefined schedule's name in words ("every_15_minutes" -> "Every 15 minutes")."""
    return words(expression) if expression in PREDEFINED else expression


def panel(gw: GatewayHandle, zone: tzinfo) -> Panel:
    attempts = [health_of(gw, m.key).last_attempt for m in gw.meters if m.active]
    reading = gw.settings.reading
    following = None
    if reading.enabled:
        runs, _ = next_runs(reading.schedule, str(gw.startup.data_dir), zone, gw.clock.now(), 1)
        following = runs[0] if runs else None
    result = Panel(meter_counts(gw), max(filter(None, attempts), default=None), following)
    service = getattr(gw, "reports", None)
    if service is not None:
        result.reports = {"delivered": 0, "failed": 0, "not sent yet": 0}
        for status in service.status():
            word = {1: "delivered", 3: "failed"}.get(status.code, "not sent yet")
            result.reports[word] += 1
            if word == "failed":
                result.failed_reports.append(status.name)
    states = list(gw.supervisor.states.values())
    result.services = len(states)
    result.troubled_services = [
        {"name": s.name, "state": s.state, "last_error": s.last_error}
        for s in states
        if s.state == "waiting" or (s.state == "stopped" and s.last_error)  # crashed
    ]
    return result
