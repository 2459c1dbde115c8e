"""Cron schedules with the product's extensions, as a thin layer over croniter.

Five fields (minute hour day-of-month month day-of-week) with ``*``, ``/``, ``-`` and ``,``
handled by croniter, plus:

- ``?a-b`` (or ``?`` alone for the whole range of the field): a random value in the range, drawn
  anew for each period of the next larger field (a minute per hour, an hour per day, a day per
  month, a month per year, a weekday per week). The draw is a pure function of the period and
  the schedule's seed, so asking twice gives the same answer and tests are exact.
- ``|`` joins several expressions: the schedule fires whenever any of them does.

As in the product (manual table 11: ``* 12 16 * mon`` runs on Mondays that are the 16th), a
restricted day of month and day of week must *both* match; classic cron would accept either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

# Field index → (lowest, highest) value, used for a bare "?".
FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
# Candidates are stepped through until the drawn values match: at most one period's worth
# (e.g. a week of minutes for "* * * * ?"); the bound only stops a runaway loop.
MAX_CANDIDATES = 100_000

PREDEFINED = {
    "every_minute": "* * * * *",
    "every_5_minutes": "*/5 * * * *",
    "every_15_minutes": "*/15 * * * *",
    "every_30_minutes": "*/30 * * * *",
    "hourly": "0 * * * *",
    "every_6_hours": "0 */6 * * *",
    "every_12_hours": "0 */12 * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 1",
    "monthly": "0 0 1 * *",
}


class CronSyntaxError(ValueError):
    """An expression the scheduler cannot run; the message names the part at fault."""


@dataclass(frozen=True)
class _RandomField:
    index: int
    low: int
    high: int


class _Expression:
    """One expression without ``|``."""

    def __init__(self, text: str, seed: str) -> None:
        fields = text.split()
        if len(fields) != 5:
            raise CronSyntaxError(f"{text!r}: cron needs 5 fields, got {len(fields)}")
        self.randoms: list[_RandomField] = []
        plain = []
        for index, field in enumerate(fields):
            if field.startswith("?"):
                low, high = _random_range(index, field[1:], text)
                self.randoms.append(_RandomField(index, low, high))
                field = f"{low}-{high}"
            plain.append(field)
        self.plain = " ".join(plain)
        self.seed = seed
        # croniter loads when a schedule is made, not with the settings (the CLI's --help)
        from croniter import CroniterError, croniter

        try:
            croniter(self.plain, datetime(2000, 1, 1), day_or=False)
        except (CroniterError, ValueError, KeyError) as exc:
            raise CronSyntaxError(f"{text!r}: {exc}") from None

    def next_after(self, moment: datetime) -> datetime:
        from croniter import croniter

        iterator = croniter(self.plain, moment, day_or=False)
        for _ in range(MAX_CANDIDATES):
            candidate = iterator.get_next(datetime)
            if all(_value(candidate, r.index) == self._draw(candidate, r) for r in self.randoms):
                return candidate
        raise CronSyntaxError(f"{self.plain!r}: no matching time found")

    def _draw(self, moment: datetime, field: _RandomField) -> int:
        period = _period_key(moment, field.index)
        digest = hashlib.blake2b(f"{self.seed}|{field.index}|{period}".encode(), digest_size=8)
        span = field.high - field.low + 1
        return field.low + int.from_bytes(digest.digest(), "big") % span


def _random_range(index: int, spec: str, text: str) -> tuple[int, int]:
    low, high = FIELD_RANGES[index]
    if spec:
        try:
            first, _, last = spec.partition("-")
            low, high = int(first), int(last or first)
        except ValueError:
            raise CronSyntaxError(f"{text!r}: '?{spec}' must be ?LOW-HIGH") from None
    lowest, highest = FIELD_RANGES[index]
    if not lowest <= low <= high <= highest:
        raise CronSyntaxError(
            f"{text!r}: ?{spec} is outside {FIELD_NAMES[index]} {lowest}-{highest}"
        )
    return low, high


def _value(moment: datetime, index: int) -> int:
    if index == 4:
        return (moment.weekday() + 1) % 7  # cron: Sunday = 0
    return (moment.minute, moment.hour, moment.day, moment.month)[index]


def _period_key(moment: datetime, index: int) -> str:
    """The period of the next larger field, within which a ``?`` value stays fixed."""
    if index == 0:
        return moment.strftime("%Y-%m-%dT%H")
    if index == 1:
        return moment.strftime("%Y-%m-%d")
    if index == 2:
        return moment.strftime("%Y-%m")
    if index == 3:
        return moment.strftime("%Y")
    monday = moment.date() - timedelta(days=moment.weekday())
    return monday.isoformat()


class CronSchedule:
    """A parsed schedule: ``next_after(moment)`` gives the next firing time strictly after it,
    in the time zone of ``moment`` (schedules run in the gateway's local time)."""

    def __init__(self, text: str, *, seed: str = "") -> None:
        text = text.strip()
        if not text:
            raise CronSyntaxError("empty schedule")
        expanded = PREDEFINED.get(text, text)
        self.text = text
        self._expressions = [_Expression(part.strip(), seed) for part in expanded.split("|")]

    def next_after(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        return min(expression.next_after(moment) for expression in self._expressions)

    def fire_times(self, start: datetime, count: int, zone: tzinfo | None = None) -> list[datetime]:
        """The next ``count`` firing times after ``start`` (in ``zone`` if given)."""
        moment = start.astimezone(zone) if zone else start
        times = []
        for _ in range(count):
            moment = self.next_after(moment)
            times.append(moment)
        return times

    def __repr__(self) -> str:
        return f"CronSchedule({self.text!r})"
