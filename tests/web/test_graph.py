"""The meter page's graph: a time axis over the chosen range with calendar ticks in the
configured zone, nice y ticks in a scaled unit, gaps, consumption bars that equal the register's
differences (resets not counted), and the exports of what is shown."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
from test_pages import browser_with_meters
from test_readable import DATE, ENERGY_WH, KEY
from webrig import VOLUME, StoredReading

from mbusgw.gateway.store.maintenance import CompactionService
from mbusgw.web.graph import boundaries, consumption, local_texts, nice_ticks, time_ticks
from mbusgw.web.times import shown_time

STOCKHOLM = ZoneInfo("Europe/Stockholm")
DAY = 86_400


def local(seconds: int, zone=STOCKHOLM) -> datetime:
    return datetime.fromtimestamp(seconds, zone)


def test_a_year_has_month_ticks_over_the_whole_range() -> None:
    until = int(datetime(2026, 12, 7, 3, 0, tzinfo=UTC).timestamp())
    since = until - 365 * DAY
    ticks = time_ticks(since, until, STOCKHOLM)
    assert 4 <= len(ticks) <= 8
    assert ticks[0][0] - since < 92 * DAY and until - ticks[-1][0] < 92 * DAY
    for at, _ in ticks:  # on the first of a month, at local midnight
        moment = local(at)
        assert (moment.day, moment.hour, moment.minute) == (1, 0, 0), moment
    assert len({text for _, text in ticks}) == len(ticks)
    assert "Jan 2026" in [text for _, text in ticks]


def test_hour_ticks_follow_the_wall_clock_over_a_clock_change() -> None:
    since = int(datetime(2026, 3, 28, 12, 0, tzinfo=STOCKHOLM).timestamp())
    ticks = time_ticks(since, since + DAY, STOCKHOLM)  # 23 hours of wall clock
    hours = [local(at).hour for at, _ in ticks]
    assert all(h % 3 == 0 for h in hours) and all(local(at).minute == 0 for at, _ in ticks)
    assert "29 Mar" in [text for _, text in ticks]  # midnight is named by its day
    week = time_ticks(since, since + 7 * DAY, STOCKHOLM)
    assert all(local(at).hour == 0 for at, _ in week)


def test_day_boundaries_are_local_midnights() -> None:
    since = int(datetime(2026, 3, 27, 12, tzinfo=STOCKHOLM).timestamp())
    days = boundaries(since, since + 3 * DAY, STOCKHOLM, "day")
    assert [local(t).strftime("%d %H") for t in days] == ["27 00", "28 00", "29 00", "30 00",
                                                          "31 00"]  # fmt: skip
    assert days[3] - days[2] == 23 * 3600  # the short day


def test_local_texts_are_the_page_time_format_over_clock_changes() -> None:
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    seconds = np.arange(start, start + 365 * DAY, 3 * 3600 + 17)  # every hour of the day
    expected = [shown_time(int(t), "Europe/Stockholm") for t in seconds.tolist()]
    assert local_texts(seconds, STOCKHOLM) == expected
    assert {text[-4:] for text in expected} == {" CET", "CEST"}


def test_nice_ticks() -> None:
    assert nice_ticks(0, 29.34) == ([0, 10, 20, 30], 0)
    assert nice_ticks(0, 24) == ([0, 5, 10, 15, 20, 25], 0)
    assert nice_ticks(29.3, 29.34) == ([29.3, 29.31, 29.32, 29.33, 29.34], 2)
    assert nice_ticks(0, 1.1)[0][:3] == [0, 0.25, 0.5] and nice_ticks(0, 1.1)[1] == 2


async def test_bars_of_a_decimal_register_keep_its_decimals(app, admin, gateway) -> None:
    browser = await browser_with_meters(app, admin, gateway)
    day = (int(time.time()) // DAY - 2) * DAY  # a whole UTC day two days ago
    volumes = ["0.100", "0.200", "0.300"]  # as floats the steps add up to 0.19999999999999998
    readings = [StoredReading.of(KEY, day + 3600 * (i + 1), [(VOLUME, Decimal(v))])
                for i, v in enumerate(volumes)]  # fmt: skip
    await gateway.writer.put_readings(readings)
    series = next(s.id for s in gateway.store.series(KEY) if s.quantity == "volume")
    url = f"/meters/{KEY}?series={series}&range=7d&view=day"
    html = (await (await browser.get(url)).get_data()).decode()
    assert re.findall(r'data-until="\d+" data-value="([^"]+)"', html) == ["0.2"]


def test_consumption_is_the_register_differences_without_resets() -> None:
    bounds = [0, 100, 200, 300]
    times = np.array([10, 50, 120, 150, 190, 250, 260, 290])
    values = np.array([5.0, 7.0, 10.0, 1.0, 4.0, 6.0, np.nan, 9.0])  # reset at 150
    amounts, seen = consumption(times, values, bounds)
    assert amounts.tolist() == [2.0, 3.0 + 3.0, 2.0]  # 10 -> 1 is not counted, nor NaN steps
    assert seen.tolist() == [True, True, True]


async def store_year(gateway, now: int) -> list[tuple[int, int]]:
    """A year of an energy register read every 6 hours, a meter exchange 100 days ago (the
    new one starts low) and three days without readings 10 days ago."""
    points, value = [], 29_000_000_000
    for at in range(now - 365 * DAY, now, 6 * 3600):
        if now - 13 * DAY < at < now - 10 * DAY:
            continue
        value = 500_000 if now - 100 * DAY <= at < now - 100 * DAY + 6 * 3600 else value + 1_000_000
        points.append((at, value))
    day = lambda at: datetime.fromtimestamp(at, UTC).date()  # noqa: E731
    readings = [StoredReading.of(KEY, at, [(ENERGY_WH, v), (DATE, day(at))])
                for at, v in points]  # fmt: skip
    for start in range(0, len(readings), 500):
        await gateway.writer.put_readings(readings[start : start + 500])
    assert await CompactionService(gateway.writer).compact_closed_days() > 0
    return points


def svg_of(html: str) -> str:
    return html[html.index("<svg") : html.index("</svg>")]


async def test_year_graph_consumption_and_exports(app, admin, gateway) -> None:
    browser = await browser_with_meters(app, admin, gateway)
    await gateway.update_settings({"timezone": "Europe/Stockholm"})
    now = int(time.time())
    points = await store_year(gateway, now)
    series = next(s.id for s in gateway.store.series(KEY) if s.quantity == "energy"
                  and s.unit == "Wh")  # fmt: skip
    base = f"/meters/{KEY}?series={series}&range=365d"
    html = (await (await browser.get(base)).get_data()).decode()
    svg = svg_of(html)
    ticks = [int(t) for t in re.findall(r'data-time="(\d+)"', svg)]
    assert len(ticks) >= 4 and ticks[0] - (now - 365 * DAY) < 92 * DAY
    assert now - ticks[-1] < 92 * DAY
    y_labels = re.findall(r'class="y-tick"[^>]*>([^<]+)<', svg)
    assert len(set(y_labels)) == len(y_labels) >= 3, y_labels
    assert "Energy in GWh" in html and "e+" not in svg
    path = re.search(r'class="line"[^>]* d="([^"]+)"', svg).group(1)
    assert path.count("M") >= 2  # the three days without readings are a gap
    assert "previous" not in svg
    # comparing with the 30 days before: a second (dashed) line, under the current one
    html = (
        await (await browser.get(f"/meters/{KEY}?series={series}&range=30d&compare=1")).get_data()
    ).decode()
    compared = svg_of(html)
    assert compared.index('class="line previous"') < compared.index('class="line"')
    assert "dashed: the same length of time before" in html
    # consumption per day over 30 days: each bar is the day's register differences
    html = (
        await (await browser.get(f"/meters/{KEY}?series={series}&range=30d&view=day")).get_data()
    ).decode()
    rows = re.findall(r'<tr data-from="(\d+)" data-until="(\d+)" data-value="([^"]+)">', html)
    assert 25 <= len(rows) <= 31 and len(re.findall(r'class="bar"', svg_of(html))) == len(rows)
    for start, end, amount in rows:
        steps = [b - a for (ta, a), (tb, b) in zip(points, points[1:], strict=False)
                 if int(start) <= tb < int(end) and b >= a]  # fmt: skip
        assert float(amount) == sum(steps), (local(int(start)), amount, steps)
    full_days = [float(a) for s, e, a in rows if int(e) - int(s) == DAY and float(a) == 4e6]
    assert len(full_days) >= 20  # four readings a day, 1 kWh... 1 MWh apart
    # the month view over the year does not count the exchange's drop
    html = (await (await browser.get(f"{base}&view=month")).get_data()).decode()
    total = sum(
        float(a)
        for *_, a in re.findall(
            r'<tr data-from="(\d+)" data-until="(\d+)" data-value="([^"]+)">', html
        )
    )
    rises = sum(b - a for (_, a), (_, b) in zip(points, points[1:], strict=False) if b >= a)
    assert total == rises
    # exports: the very SVG, and the bars as CSV in the stored unit
    exported = await browser.get(f"/meters/{KEY}/graph.svg?series={series}&range=365d&view=month")
    assert exported.headers["Content-Type"].startswith("image/svg+xml")
    assert (
        (await exported.get_data()).decode().startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    )
    table = await browser.get(f"/meters/{KEY}/graph.csv?series={series}&range=365d&view=month")
    head, *lines = list(csv.reader(io.StringIO((await table.get_data()).decode())))
    assert head == ["from", "until", "consumption (Wh)"]
    assert sum(float(line[2]) for line in lines) == total and "CET" in lines[0][0]
    values_csv = await browser.get(f"/meters/{KEY}/graph.csv?series={series}&range=30d")
    head, *lines = list(csv.reader(io.StringIO((await values_csv.get_data()).decode())))
    assert head == ["time", "Energy (Wh)"] and lines[-1][1] == str(points[-1][1])
    # compared with the 30 days before: both periods, the one before first, exact values
    compared_csv = await browser.get(f"/meters/{KEY}/graph.csv?series={series}&range=30d&compare=1")
    assert "compared" in compared_csv.headers["Content-Disposition"]
    head, *both = list(csv.reader(io.StringIO((await compared_csv.get_data()).decode())))
    assert head == ["period", "time", "Energy (Wh)"]
    before = [row[1:] for row in both if row[0] == "previous"]
    assert both == [["previous", *row] for row in before] + [["current", *row] for row in lines]
    stored = [str(v) for _, v in points]
    first = stored.index(lines[0][1])
    assert 115 <= len(before) <= 121
    assert [v for _, v in before] == stored[first - len(before) : first]
    # a date series is listed, not drawn as epoch seconds
    dates = next(s.id for s in gateway.store.series(KEY) if s.quantity == "time_point")
    html = (await (await browser.get(f"/meters/{KEY}?series={dates}")).get_data()).decode()
    assert "<figure" not in html and "not numbers" in html
    assert (await browser.get(f"/meters/{KEY}/graph.svg?series={dates}")).status_code == 404
