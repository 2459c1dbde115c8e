"""When scheduled reports run, and how they wait for the reading they report on.

A report on a predefined schedule (``every_15_minutes``, ``hourly``, ``daily`` …) is
synchronised with the read schedule: at its time it waits until the reading cycle that started
at or before that time has finished (the ``cycle_finished`` event), but no longer than a read
period or until the report's next time. A report on a cron expression runs at its times without
waiting; the manual warns that it may then run before a reading is complete — nothing is lost
either way, since what is not stored yet goes with the next report.
"""

from __future__ import annotations

import datetime as dt

import trio

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.cron import PREDEFINED, CronSchedule

LOOKBACKS = (dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(days=32))
MAX_STEPS = 1500


def is_synchronised(schedule: str) -> bool:
    return schedule.strip() in PREDEFINED


def report_schedule(schedule: str, first_day_of_week: str, seed: str) -> CronSchedule:
    """The report's schedule; a weekly report starts the week on the conventions' first day."""
    text = schedule.strip()
    if text == "weekly" and first_day_of_week == "sunday":
        text = "0 0 * * 0"
    return CronSchedule(text, seed=seed)


def last_fire(schedule: CronSchedule, moment: dt.datetime) -> dt.datetime | None:
    """The latest firing time at or before ``moment`` (within 32 days), or None."""
    for lookback in LOOKBACKS:
        found = None
        candidate = schedule.next_after(moment - lookback)
        for _ in range(MAX_STEPS):
            if candidate > moment:
                break
            found = candidate
            candidate = schedule.next_after(candidate)
        if found is not None:
            return found
    return None


def period_at(schedule: CronSchedule, moment: dt.datetime) -> float:
    """Seconds from the firing time at ``moment`` to the next one (a cron's local period)."""
    return (schedule.next_after(moment) - moment).total_seconds()


class CycleTracker:
    """The newest ``cycle_finished`` time, and waiting for a cycle to finish."""

    def __init__(self) -> None:
        self.last_finished: dt.datetime | None = None
        self._changed = trio.Event()

    def finished(self, at: dt.datetime) -> None:
        if self.last_finished is None or at > self.last_finished:
            self.last_finished = at
        self._changed.set()
        self._changed = trio.Event()

    def finished_since(self, start: dt.datetime) -> bool:
        return self.last_finished is not None and self.last_finished >= start

    async def wait_since(self, start: dt.datetime, deadline: dt.datetime, clock: WallClock) -> bool:
        """Wait until a cycle finished at or after ``start``; False when ``deadline`` came first."""
        while not self.finished_since(start):
            remaining = (deadline - clock.now()).total_seconds()
            if remaining <= 0:
                return False
            with trio.move_on_after(min(remaining, 60.0)):
                await self._changed.wait()
        return True
