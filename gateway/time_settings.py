"""Settings of the clock watch (manual 6.3; docs/time.md)."""

from __future__ import annotations

from dataclasses import dataclass

from mbusgw.gateway.settings_fields import _bounded


@dataclass(frozen=True)
class TimeSettings:
    max_drift_s: int = _bounded(
        5, 1, 86_400, note="a wall-clock step or drift beyond this (against monotonic) is logged"
    )
    check_interval_s: int = _bounded(60, 1, 3600, note="how often the two clocks are compared")
