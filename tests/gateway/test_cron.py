"""Cron schedules: every example of the manual's table 11, the ``?`` and ``|`` extensions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mbusgw.gateway.cron import PREDEFINED, CronSchedule, CronSyntaxError

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday, 00:00


def times(expr: str, count: int, start: datetime = START) -> list[str]:
    return [t.strftime("%a %Y-%m-%d %H:%M") for t in CronSchedule(expr).fire_times(start, count)]


def days_of(expr: str, count: int, start: datetime = START) -> list[str]:
    return sorted({t.split()[1] for t in times(expr, count, start)})


def test_15_past_every_hour() -> None:
    assert times("15 * * * *", 3) == [
        "Mon 2026-11-23 00:15",
        "Mon 2026-11-23 01:15",
        "Mon 2026-11-23 02:15",
    ]


def test_every_15_minutes() -> None:
    assert times("*/15 * * * *", 3) == [
        "Mon 2026-11-23 00:15",
        "Mon 2026-11-23 00:30",
        "Mon 2026-11-23 00:45",
    ]


def test_every_minute() -> None:
    assert times("* * * * *", 2) == ["Mon 2026-11-23 00:01", "Mon 2026-11-23 00:02"]


def test_every_minute_of_hour_12_on_mondays() -> None:
    fired = times("* 12 * * mon", 61)
    assert fired[0] == "Mon 2026-11-23 12:00" and fired[59] == "Mon 2026-11-23 12:59"
    assert fired[60] == "Mon 2026-11-30 12:00"


def test_day_of_month_and_weekday_must_both_match() -> None:
    # the manual: hour 12 "if it is a Monday AND the 16th"; the next Monday 16th is in Aug 2027
    assert times("* 12 16 * mon", 1) == ["Mon 2027-08-16 12:00"]


@pytest.mark.parametrize("expr", ["59 11 * * 1,2,3,4,5", "59 11 * * 1-5"])
def test_weekdays_at_11_59(expr: str) -> None:
    assert times(expr, 6) == [
        "Mon 2026-11-23 11:59",
        "Tue 2026-11-24 11:59",
        "Wed 2026-11-25 11:59",
        "Thu 2026-11-26 11:59",
        "Fri 2026-11-27 11:59",
        "Mon 2026-11-30 11:59",
    ]


def test_every_15_minutes_from_9_to_17() -> None:
    fired = times("*/15 9-17 * * *", 37)
    assert fired[0] == "Mon 2026-11-23 09:00"
    assert fired[35] == "Mon 2026-11-23 17:45"
    assert fired[36] == "Tue 2026-11-24 09:00"


def test_every_other_day_from_10_to_16() -> None:
    fired = times("* 12 10-16/2 * *", 241)
    assert {t.split()[2][:2] for t in fired} == {"12"}
    assert days_of("* 12 10-16/2 * *", 240) == [f"2026-12-{d}" for d in (10, 12, 14, 16)]
    assert fired[240] == "Sun 2027-01-10 12:00"


def test_lists_of_ranges() -> None:
    expected = [f"2026-12-{d:02d}" for d in [*range(1, 16), 17, *range(20, 26)]]
    december = datetime(2026, 12, 1, tzinfo=UTC)
    assert days_of("* 12 1-15,17,20-25 * *", 60 * len(expected), december) == expected


def test_union_of_expressions() -> None:
    assert times("0 5 * * *|8 10 * * *|22 17 * * *", 4) == [
        "Mon 2026-11-23 05:00",
        "Mon 2026-11-23 10:08",
        "Mon 2026-11-23 17:22",
        "Tue 2026-11-24 05:00",
    ]


def test_random_minute_is_in_range_and_drawn_per_period() -> None:
    # Manual: "?1-30 0 * * *". Its prose says "every hour", but the hour field says 0: we follow
    # the fields (once a day, in 00:01-00:30); "?1-30 * * * *" is the every-hour form.
    daily = CronSchedule("?1-30 0 * * *", seed="meter-read").fire_times(START, 20)
    assert all(t.hour == 0 and 1 <= t.minute <= 30 for t in daily)
    assert [t.date() for t in daily] == [START.date() + timedelta(days=d) for d in range(20)]
    assert len({t.minute for t in daily}) > 5  # drawn anew each day, not fixed

    hourly = CronSchedule("?1-30 * * * *", seed="meter-read").fire_times(START, 48)
    assert [t.hour for t in hourly[:24]] == list(range(24))
    assert all(1 <= t.minute <= 30 for t in hourly)
    assert len({t.minute for t in hourly}) > 5


def test_random_draw_is_stable_within_its_period() -> None:
    schedule = CronSchedule("?1-30 * * * *", seed="s")
    first = schedule.next_after(START)
    # asking again from any moment before the fire time gives the same answer
    assert schedule.next_after(START + timedelta(seconds=30)) == first
    assert schedule.next_after(first - timedelta(seconds=1)) == first
    # a different seed (another gateway or job) draws differently somewhere in a day
    other = CronSchedule("?1-30 * * * *", seed="t").fire_times(START, 24)
    assert other != schedule.fire_times(START, 24)


def test_random_hour_and_bare_question_mark() -> None:
    fired = CronSchedule("0 ? * * *", seed="x").fire_times(START, 10)
    assert all(t.minute == 0 for t in fired)
    assert [t.date() for t in fired] == [START.date() + timedelta(days=d) for d in range(10)]


def test_local_time_zone_and_daylight_saving() -> None:
    stockholm = ZoneInfo("Europe/Stockholm")
    start = datetime(2026, 3, 28, 12, 0, tzinfo=stockholm)  # DST starts 2026-03-29 02:00
    fired = CronSchedule("0 3 * * *").fire_times(start, 2)
    assert [t.isoformat() for t in fired] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T03:00:00+02:00",
    ]


@pytest.mark.parametrize("name", sorted(PREDEFINED))
def test_predefined_schedules(name: str) -> None:
    first, second = CronSchedule(name).fire_times(START, 2)
    assert second > first > START


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "empty"),
        ("* * * *", "5 fields"),
        ("61 * * * *", "61"),
        ("?50-70 * * * *", "outside minute"),
        ("?a-b * * * *", "LOW-HIGH"),
        ("0 5 * * *|nonsense", "5 fields"),
        ("* * * * funday", "funday"),
    ],
)
def test_bad_expressions_are_refused_clearly(expr: str, message: str) -> None:
    with pytest.raises(CronSyntaxError, match=message):
        CronSchedule(expr)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        CronSchedule("* * * * *").next_after(datetime(2026, 1, 1))
