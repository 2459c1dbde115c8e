"""Runs jobs on cron schedules in the gateway's local time, with the product's job retries.

A job is an async function of its firing time that raises ``JobFailed`` (or any ``Exception``)
when it did not do its work. A failed run is tried again ``max_retries`` times, ``retry_offset``
seconds apart, unless the next scheduled time comes first. Runs never overlap: a run that lasts
past the next firing time makes the scheduler skip to the first time after it, with a warning.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

import trio

from mbusgw.gateway.clock import WallClock, sleep_until_wall
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.supervisor import ERROR, INFO, WARNING, LogFunction, describe

JobFunction = Callable[[datetime], Awaitable[Any]]


class JobFailed(Exception):
    """A job did not complete (some meters unread, a report not delivered)."""


@dataclass
class JobStatus:
    last_fire: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    next_fire: datetime | None = None
    runs: int = 0
    failures: int = 0


async def run_with_retries(
    job: JobFunction,
    fire_time: datetime,
    *,
    max_retries: int,
    retry_offset: float,
    log: LogFunction,
    origin: str,
    deadline: datetime | None = None,
    clock: WallClock | None = None,
) -> bool:
    """Run ``job`` once and retry it on failure; True when an attempt succeeded."""
    for attempt in range(max_retries + 1):
        try:
            await job(fire_time)
            return True
        except Exception as exc:
            text = describe(exc)
            if attempt == max_retries:
                log(ERROR, origin, f"job failed after {attempt + 1} attempt(s): {text}")
                return False
            log(WARNING, origin, f"job failed ({text}); retry {attempt + 1} in {retry_offset:g} s")
        retry_at = clock.now() + timedelta(seconds=retry_offset) if clock else None
        if deadline is not None and retry_at is not None and retry_at >= deadline:
            log(WARNING, origin, "no time for another retry before the next scheduled run")
            return False
        await trio.sleep(retry_offset)
    return False


class ScheduledJob:
    """One job on one schedule; ``run`` is a supervised service."""

    def __init__(
        self,
        name: str,
        schedule: CronSchedule,
        job: JobFunction,
        *,
        clock: WallClock,
        zone: tzinfo,
        log: LogFunction,
        max_retries: int = 0,
        retry_offset: float = 60.0,
    ) -> None:
        self.name = name
        self.schedule = schedule
        self.job = job
        self.clock = clock
        self.zone = zone
        self.log = log
        self.max_retries = max_retries
        self.retry_offset = retry_offset
        self.status = JobStatus()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        fire = self.schedule.next_after(self.clock.now().astimezone(self.zone))
        self.status.next_fire = fire
        task_status.started()
        while True:
            await sleep_until_wall(self.clock, fire)
            following = self.schedule.next_after(fire)
            self.status.last_fire = fire
            self.status.runs += 1
            ok = await run_with_retries(
                self.job,
                fire,
                max_retries=self.max_retries,
                retry_offset=self.retry_offset,
                log=self.log,
                origin=self.name,
                deadline=following,
                clock=self.clock,
            )
            if ok:
                self.status.last_success = fire
                self.status.last_error = None
            else:
                self.status.failures += 1
                self.status.last_error = "failed"
            now = self.clock.now().astimezone(self.zone)
            if now >= following:
                skipped = 0
                while following <= now:
                    following = self.schedule.next_after(following)
                    skipped += 1
                self.log(
                    WARNING,
                    self.name,
                    f"the run took until {now:%H:%M:%S}; skipped {skipped} scheduled time(s)",
                )
            fire = following
            self.status.next_fire = fire
            if self.status.runs == 1:
                self.log(INFO, self.name, f"first run done; next at {fire.isoformat()}")
