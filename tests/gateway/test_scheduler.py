"""Scheduled jobs under MockClock: firing times, `?` and `|`, retries, overruns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import trio

from mbusgw.gateway.clock import TrioWallClock
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.scheduler import JobFailed, ScheduledJob

START = datetime(2026, 11, 23, 0, 0, 30, tzinfo=UTC)  # Monday 00:00:30


class Log(list):
    def __call__(self, level: int, origin: str, text: str) -> None:
        self.append((level, origin, text))


async def run_for(job: ScheduledJob, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await job.run()


async def test_fires_on_the_wall_clock(autojump_clock) -> None:
    clock = TrioWallClock(START)
    fired: list[datetime] = []
    real: list[datetime] = []

    async def job(when: datetime) -> None:
        fired.append(when)
        real.append(clock.now())

    log = Log()
    schedule = CronSchedule("0 5 * * *|8 10 * * *|22 17 * * *")
    scheduled = ScheduledJob("read", schedule, job, clock=clock, zone=UTC, log=log)
    await run_for(scheduled, 2 * 86400)
    assert [f.strftime("%d %H:%M") for f in fired] == [
        "23 05:00",
        "23 10:08",
        "23 17:22",
        "24 05:00",
        "24 10:08",
        "24 17:22",
    ]
    # the job ran when the wall clock said so (within the sleep granularity of the mock)
    assert all(abs((r - f).total_seconds()) < 0.01 for r, f in zip(real, fired, strict=True))


async def test_random_minute_in_local_time(autojump_clock) -> None:
    zone = ZoneInfo("Europe/Stockholm")
    clock = TrioWallClock(START)
    fired: list[datetime] = []

    async def job(when: datetime) -> None:
        fired.append(clock.now().astimezone(zone))

    schedule = CronSchedule("?1-30 * * * *", seed="gw1")
    await run_for(ScheduledJob("read", schedule, job, clock=clock, zone=zone, log=Log()), 6 * 3600)
    assert len(fired) == 6
    assert all(1 <= t.minute <= 30 for t in fired)
    # one run in each local hour from the start (01:00:30 local; hour 1 if its draw is later)
    hours = [t.hour for t in fired]
    assert hours[0] in (1, 2) and hours == list(range(hours[0], hours[0] + 6))


async def test_retries_then_success(autojump_clock) -> None:
    clock = TrioWallClock(START)
    attempts: list[datetime] = []

    async def job(when: datetime) -> None:
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise JobFailed("3 meters did not answer")

    log = Log()
    scheduled = ScheduledJob(
        "read",
        CronSchedule("0 * * * *"),
        job,
        clock=clock,
        zone=UTC,
        log=log,
        max_retries=3,
        retry_offset=120,
    )
    await run_for(scheduled, 3600 + 600)
    assert [a.strftime("%H:%M") for a in attempts] == ["01:00", "01:02", "01:04"]
    assert scheduled.status.last_success is not None and scheduled.status.failures == 0
    assert sum("retry" in text for _, _, text in log) == 2


async def test_retries_stop_before_the_next_run_and_are_counted(autojump_clock) -> None:
    clock = TrioWallClock(START)
    attempts: list[datetime] = []

    async def job(when: datetime) -> None:
        attempts.append(clock.now())
        raise JobFailed("line down")

    log = Log()
    scheduled = ScheduledJob(
        "read",
        CronSchedule("*/5 * * * *"),
        job,
        clock=clock,
        zone=UTC,
        log=log,
        max_retries=10,
        retry_offset=120,
    )
    await run_for(scheduled, 600)
    # 00:05, retry 00:07, 00:09; the next retry would pass 00:10 so the 00:10 run goes ahead
    assert [a.strftime("%H:%M") for a in attempts] == ["00:05", "00:07", "00:09", "00:10"]
    assert scheduled.status.failures == 1


async def test_overrun_skips_missed_times(autojump_clock) -> None:
    clock = TrioWallClock(START)
    fired: list[datetime] = []

    async def slow_job(when: datetime) -> None:
        fired.append(when)
        await trio.sleep(150)  # a reading that takes 2.5 minutes on a 1-minute schedule

    log = Log()
    schedule = CronSchedule("* * * * *")
    await run_for(ScheduledJob("read", schedule, slow_job, clock=clock, zone=UTC, log=log), 400)
    assert [f.strftime("%H:%M") for f in fired] == ["00:01", "00:04", "00:07"]
    assert any("skipped 2 scheduled time(s)" in text for _, _, text in log)


async def test_wall_clock_jump_is_followed(autojump_clock) -> None:
    class JumpingClock:
        def __init__(self) -> None:
            self.base = TrioWallClock(START)
            self.offset = timedelta(0)

        def now(self) -> datetime:
            return self.base.now() + self.offset

    clock = JumpingClock()
    fired: list[float] = []

    async def job(when: datetime) -> None:
        fired.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        scheduled = ScheduledJob(
            "read", CronSchedule("0 12 * * *"), job, clock=clock, zone=UTC, log=Log()
        )
        nursery.start_soon(scheduled.run)
        await trio.sleep(100)
        clock.offset = timedelta(hours=11, minutes=58)  # NTP sets the time forward
        await trio.sleep(300)
        nursery.cancel_scope.cancel()
    # fired around 12:00 wall time: ~2 minutes after the jump, not 12 hours later
    assert len(fired) == 1 and 100 < fired[0] < 100 + 60 + 120 + 1
