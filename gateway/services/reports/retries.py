"""How often a failed report is tried again (manual 6.32.1, table 10).

With adaptive retries (the default) the number and spacing of retries follow the report's
period, so that every retry is over before the next report is due; when they all fail, the
values go with the next report. Without them, the report's own retry settings apply, or the
general job retry settings where the report has none.
"""

from __future__ import annotations

from dataclasses import dataclass

from mbusgw.gateway.report_settings import ReportConfig
from mbusgw.gateway.settings import Settings

MINUTE = 60
HOUR = 3600
# (longest report period in seconds, retries, seconds between them)
ADAPTIVE_TABLE = (
    (15 * MINUTE, 1, 0),
    (60 * MINUTE, 2, 300),
    (23 * HOUR, 3, 500),
    (None, 6, 3600),
)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int
    offset_s: float


def adaptive(period_s: float) -> RetryPolicy:
    """Table 10: 1–15 min: 1 × 0 s; 16–60 min: 2 × 300 s; 61 min–23 h: 3 × 500 s; more: 6 × 1 h."""
    for longest, retries, offset in ADAPTIVE_TABLE:
        if longest is None or period_s <= longest:
            return RetryPolicy(retries, offset)
    raise AssertionError("the table ends with an open row")


def policy_for(report: ReportConfig, settings: Settings, period_s: float | None) -> RetryPolicy:
    """The retries of one run of ``report``; ``period_s`` is None for unscheduled reports."""
    if settings.reports.adaptive_retries and period_s is not None:
        return adaptive(period_s)
    retries = report.retries if report.retries >= 0 else settings.jobs.max_retries
    offset = report.retry_offset_s if report.retry_offset_s >= 0 else settings.jobs.retry_offset_s
    return RetryPolicy(retries, offset)
