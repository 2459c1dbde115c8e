"""What each template carries: identity, conventions, exact values, and the selection rules
(value period, value interval, cursors)."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import openpyxl
import pytest
from reportkit import METERS, READINGS, csv_records, filled_store, stored_values, values_of_report
from storekit import ENERGY, T0, FixedClock, open_store

from mbusgw.core.units import Flag
from mbusgw.gateway.events import METER_FAILED, REPORT_FAILED, Event
from mbusgw.gateway.meters import AddressingMode, Meter
from mbusgw.gateway.report_catalog import TEMPLATES, layout_of
from mbusgw.gateway.services.reports.context import MeterIdentity, ReportContext
from mbusgw.gateway.services.reports.conventions import Conventions
from mbusgw.gateway.services.reports.selection import Selection, Window
from mbusgw.gateway.services.reports.templates import RENDERERS, render
from mbusgw.gateway.store import SeriesSpec, StoredReading

NOW = T0 + READINGS * 900
ENGLISH = Conventions()
SWEDISH = Conventions("sv", ",", "monday", ZoneInfo("Europe/Stockholm"))
GERMAN = Conventions("de", ",", "monday", ZoneInfo("Europe/Berlin"))


def context(template: int, conventions: Conventions = ENGLISH, **kwargs) -> ReportContext:
    window = kwargs.pop("window", Window(T0, NOW + 1))
    return ReportContext(
        "daily", template, "gw-7", "Jane Doe; +46 8 123", conventions, NOW, window, **kwargs
    )


def rendered(store, template: int, conventions: Conventions = ENGLISH, delivered=None, **kwargs):
    ctx = context(template, conventions, **kwargs)
    selection = Selection(store, ctx.window, conventions, dict(delivered or {}))
    return render(ctx, selection), selection


@pytest.fixture
def store(tmp_path: Path):
    return filled_store(tmp_path, FixedClock(NOW))


def test_every_template_has_a_renderer() -> None:
    assert {number % 1000 for number in TEMPLATES} == set(RENDERERS)
    assert {number // 1000 for number in TEMPLATES} == {1, 2, 3}


def test_values_csv_carries_identity_and_every_value_exactly(store) -> None:
    report, selection = rendered(store, 2101)
    preamble, heading, rows = csv_records(report.data())
    assert preamble == {
        "device": ["gw-7"],
        "contact": ["Jane Doe; +46 8 123"],
        "report": ["daily", "2101"],
        "from": ["2023-11-15T00:00:00+00:00"],
        "until": ["2023-11-15T02:00:01+00:00"],
        "generated": ["2023-11-15T02:00:00+00:00"],
    }
    assert heading[-1] == "flags"
    assert values_of_report(report.data()) == stored_values(store)
    assert len(rows) == report.values == len(METERS) * READINGS * 4
    first = rows[0]
    assert first[:7] == [
        "m1",
        "energy",
        "kWh",
        "",
        "2023-11-15T00:00:07+00:00",
        "2023-11-15T00:00:00",
        "12000",
    ]
    volumes = [row[6] for row in rows if row[0] == "m1" and row[1] == "volume"]
    assert volumes[:2] == ["456.789", "456.800"]  # exact, trailing zero kept
    assert report.filename == "gw-7_daily_20231115T020000Z.csv"
    assert report.content_type == "text/csv; charset=utf-8"
    assert report.cursors == {meter: NOW - 900 + 7 for meter in METERS}
    assert selection.readings == len(METERS) * READINGS


@pytest.mark.parametrize(
    ("conventions", "headings", "volume", "time"),
    [
        (SWEDISH, ["mätare", "storhet", "enhet", "beskrivning"], "456,789", "01:00:07+01:00"),
        (GERMAN, ["Zähler", "Größe", "Einheit", "Beschreibung"], "456,789", "01:00:07+01:00"),
    ],
)
def test_values_csv_follows_the_conventions(store, conventions, headings, volume, time) -> None:
    report, _ = rendered(store, 1101, conventions)
    preamble, heading, rows = csv_records(report.data())
    assert heading[:4] == headings
    assert next(iter(preamble)) in ("enhet", "Gerät")
    m1_volume = [row for row in rows if row[0] == "m1" and row[1] == "volume"][0]
    assert m1_volume[6] == volume
    assert m1_volume[4].endswith(time)
    assert report.subject.startswith("gw-7: ")
    assert ("Mätarrapport" if conventions.language == "sv" else "Zählerbericht") in report.subject


def test_readings_csv_has_a_column_per_quantity(store) -> None:
    report, _ = rendered(store, 3102)
    _, heading, rows = csv_records(report.data())
    assert heading == [
        "meter",
        "time",
        "meter time",
        "energy [kWh]",
        "volume [m³]",
        "flow_temperature [°C] (supply)",
        "fabrication_number",
    ]
    assert len(rows) == len(METERS) * READINGS
    assert rows[1] == [
        "m1",
        "2023-11-15T00:15:07+00:00",
        "2023-11-15T00:15:00",
        "12003",
        "456.800",
        "65.1",
        "Am1",
    ]


def test_workbook_has_a_summary_and_typed_cells(store) -> None:
    report, _ = rendered(store, 1112, SWEDISH)
    assert report.filename.endswith(".xlsx")
    book = openpyxl.load_workbook(io.BytesIO(report.data()))
    assert book.sheetnames == ["Rapport", "Värden"]
    summary = {row[0]: row[1] for row in book["Rapport"].iter_rows(values_only=True)}
    assert summary["enhet"] == "gw-7" and summary["kontakt"] == "Jane Doe; +46 8 123"
    assert summary["mall"] == 1112 and summary["värden"] == len(METERS) * READINGS * 4
    rows = list(book["Värden"].iter_rows(values_only=True))
    assert rows[0][:4] == ("mätare", "tid", "mätartid", "energy [kWh]")
    assert rows[2] == (
        "m1",
        dt.datetime(2023, 11, 15, 1, 15, 7),  # local time
        dt.datetime(2023, 11, 15, 0, 15),
        12003,
        456.8,
        65.1,
        "Am1",
    )
    assert len(rows) == 1 + len(METERS) * READINGS


def test_latest_csv_has_one_row_per_meter_with_identity(store) -> None:
    meter = Meter("m2", "Building A, 3rd floor", "12345678", 2400, (AddressingMode.SECONDARY,))
    identities = {"m2": MeterIdentity.of(meter)}
    report, _ = rendered(store, 1120, meters=identities)
    _, heading, rows = csv_records(report.data())
    assert heading[:7] == [
        "meter",
        "time",
        "meter time",
        "position",
        "secondary address",
        "manufacturer",
        "medium",
    ]
    assert [row[0] for row in rows] == list(METERS)
    assert rows[1][:5] == [
        "m2",
        "2023-11-15T01:45:07+00:00",
        "2023-11-15T01:45:00",
        "Building A, 3rd floor",
        "12345678",
    ]
    assert rows[1][7:] == ["12021", "456.866", "65.0", "Am2"]


def test_json_has_units_identity_and_exact_numbers(store) -> None:
    identities = {"m1": MeterIdentity("roof", "11112222", "KAM", "heat (outlet)", 3)}
    report, _ = rendered(store, 3130, meters=identities)
    document = json.loads(report.data(), parse_float=Decimal)
    assert document["device"] == {"name": "gw-7", "contact": "Jane Doe; +46 8 123"}
    assert document["report"]["template"] == 3130 and document["report"]["timezone"] == "UTC"
    assert document["count"] == {"meters": 3, "values": len(METERS) * READINGS * 4}
    m1 = document["meters"][0]
    assert m1["meter"] == "m1" and m1["manufacturer"] == "KAM" and m1["version"] == 3
    volume = next(s for s in m1["series"] if s["quantity"] == "volume")
    assert volume["unit"] == "m³"
    assert volume["values"][1] == ["2023-11-15T00:15:07+00:00", Decimal("456.800")]
    assert str(volume["values"][1][1]) == "456.800"
    temperature = next(s for s in m1["series"] if s["quantity"] == "flow_temperature")
    assert temperature["description"] == "supply"


def test_raw_telegrams_in_hex(store) -> None:
    report, _ = rendered(store, 2140)
    _, heading, rows = csv_records(report.data())
    assert heading == ["meter", "time", "frame", "telegram (hex)"]
    assert rows[0] == ["m1", "2023-11-15T00:00:07+00:00", "1", "6805056808006D31"]
    assert len(rows) == len(METERS) * READINGS


def test_event_templates() -> None:
    at = dt.datetime.fromtimestamp(NOW, dt.UTC)
    events = [
        Event(METER_FAILED, at, "m1", {"error": "no response"}),
        Event(REPORT_FAILED, at, None, {"report": "daily", "error": "HTTP 503"}),
    ]
    report = render(context(1201, SWEDISH), events)
    _, heading, rows = csv_records(report.data())
    assert heading == ["tid", "händelse", "text", "mätare", "detaljer"]
    assert rows[0] == [
        "2023-11-15T03:00:00+01:00",
        "meter_failed",
        "mätaravläsningen misslyckades",
        "m1",
        '{"error": "no response"}',
    ]
    assert "händelser: 2" in report.body
    document = json.loads(render(context(3230), events).data())
    assert [e["event"] for e in document["events"]] == ["meter_failed", "report_failed"]
    assert document["events"][1]["detail"] == {"report": "daily", "error": "HTTP 503"}


def test_every_kind_of_value_is_written(tmp_path: Path) -> None:
    store = open_store(tmp_path, FixedClock(NOW))
    specs = [SeriesSpec(bytes([0x04, i]), f"q{i}", "u") for i in range(10)]
    values = [
        1.5,
        dt.date(2024, 2, 29),
        dt.datetime(2024, 3, 1, 12, 30),
        dt.time(6, 5, 4),
        b"\x01\xab",
        'semi;colon "quoted"',
        None,
        Decimal("-0.05"),
        12 * 10**20,
        Decimal("1E+3"),
    ]
    store.put_readings([StoredReading.of("x", NOW - 60, list(zip(specs, values, strict=True)))])
    report, _ = rendered(store, 1101)
    _, _, rows = csv_records(report.data())
    assert [row[6] for row in rows] == [
        "1.5",
        "2024-02-29",
        "2024-03-01T12:30:00",
        "06:05:04",
        "01AB",
        'semi;colon "quoted"',
        "",
        "-0.05",
        "1200000000000000000000",
        "1000",
    ]
    document = json.loads(rendered(store, 1130)[0].data())
    values_json = [s["values"][0][1] for s in document["meters"][0]["series"]]
    assert values_json == [
        1.5,
        "2024-02-29",
        "2024-03-01T12:30:00",
        "06:05:04",
        "01AB",
        'semi;colon "quoted"',
        None,
        -0.05,
        1200000000000000000000,
        1000,
    ]
    book = openpyxl.load_workbook(io.BytesIO(rendered(store, 1112)[0].data()))
    cells = list(book.worksheets[1].iter_rows(values_only=True))[1][3:]
    assert cells[0] == 1.5 and cells[1] == dt.datetime(2024, 2, 29) and cells[7] == -0.05


def test_invalid_values_are_flagged(tmp_path: Path) -> None:
    store = open_store(tmp_path, FixedClock(NOW))
    reading = StoredReading.of("x", NOW - 60, [(ENERGY, 5)])
    reading.flags = np.array([Flag.INVALID | Flag.SUMMER_TIME], np.uint8)
    store.put_readings([reading])
    _, _, rows = csv_records(rendered(store, 1101)[0].data())
    assert rows[0][6:] == ["5", "invalid+summer_time"]


# -- selection ----------------------------------------------------------------------------------


def times_in(report) -> list[str]:
    _, _, rows = csv_records(report.data())
    return sorted({row[1] for row in rows if row[0] == "m1"})


def test_value_interval_keeps_the_first_reading_of_each_interval(tmp_path: Path) -> None:
    store = filled_store(tmp_path, FixedClock(NOW + 86_400 * 2), readings=2 * 96 + 8)
    window = Window(T0, NOW + 86_400 * 2, "hour")
    report, _ = rendered(store, 1102, window=window)
    hours = times_in(report)
    assert hours[:3] == [
        "2023-11-15T00:00:07+00:00",
        "2023-11-15T01:00:07+00:00",
        "2023-11-15T02:00:07+00:00",
    ]
    assert len(hours) == 50
    # days of the local calendar: Stockholm's day starts at 23:00 UTC
    daily = times_in(rendered(store, 1102, SWEDISH, window=Window(T0, NOW + 2 * 86_400, "day"))[0])
    assert daily == [
        "2023-11-15T01:00:07+01:00",
        "2023-11-16T00:00:07+01:00",
        "2023-11-17T00:00:07+01:00",
    ]


def test_weeks_start_on_the_configured_day(tmp_path: Path) -> None:
    # readings on Saturday 18th, Sunday 19th and Monday 20th November 2023, at noon
    store = open_store(tmp_path, FixedClock(T0 + 7 * 86_400))
    for day in (3, 4, 5):
        store.put_readings([StoredReading.of("m1", T0 + day * 86_400 + 43_200, [(ENERGY, day)])])
    window = Window(T0, T0 + 7 * 86_400, "week")
    monday, _ = rendered(store, 1102, Conventions(first_day_of_week="monday"), window=window)
    sunday, _ = rendered(store, 1102, Conventions(first_day_of_week="sunday"), window=window)
    assert [t[:10] for t in times_in(monday)] == ["2023-11-18", "2023-11-20"]
    assert [t[:10] for t in times_in(sunday)] == ["2023-11-18", "2023-11-19"]


def test_cursor_and_interval_continue_across_reports(tmp_path: Path) -> None:
    store = filled_store(tmp_path, FixedClock(NOW), readings=READINGS)
    window = Window(T0, T0 + 5 * 900, "hour")  # 00:00 .. 01:00:07 (readings 0-4)
    first, selection = rendered(store, 1102, window=window)
    assert times_in(first) == ["2023-11-15T00:00:07+00:00", "2023-11-15T01:00:07+00:00"]
    # the next report starts after the cursor; 01:15 .. 01:45 share the hour already delivered
    window = Window(T0, NOW + 1, "hour")
    second, _ = rendered(store, 1102, window=window, delivered=selection.cursors)
    assert times_in(second) == []
    assert second.cursors == {meter: NOW - 900 + 7 for meter in METERS}
    window = Window(T0, NOW + 1, "all")
    third, _ = rendered(store, 1102, window=window, delivered=selection.cursors)
    assert times_in(third) == [f"2023-11-15T01:{m}:07+00:00" for m in ("15", "30", "45")]


def test_value_period_limits_how_far_back(store) -> None:
    report, _ = rendered(store, 1102, window=Window(NOW - 3600, NOW + 1))
    assert len(times_in(report)) == 4  # the last hour only
    _, late_selection = rendered(
        store, 1101, window=Window(NOW - 3600, NOW + 1), delivered={"m1": T0 - 86_400}
    )
    assert late_selection.late_meters == 1
    assert layout_of(1101).kind == "values"
