"""No text the gateway writes into a CSV file or a workbook becomes a formula (OWASP's CSV
injection guidance); numbers, negative ones included, stay numbers."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from modbus_rig import ENERGY, Rig, meter
from openpyxl import Workbook
from reportkit import csv_records
from storekit import FixedClock, open_store
from test_report_templates import NOW, rendered

from mbusgw.gateway.cells import CsvWriter, csv_text, read_text, sheet_row
from mbusgw.gateway.meters import parse_meter_list, template_csv
from mbusgw.gateway.services.modbus_csv import map_csv
from mbusgw.gateway.store import SeriesSpec, StoredReading

ATTACK = '=HYPERLINK("http://evil.example","x")'
RISKY = [ATTACK, "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx", "'=already"]
NUMBERS_AS_TEXT = ["-12", "-0.05", "-12,5", "+3", "-1.5e-05", "12"]


def written(rows: list[list[object]], **options: object) -> list[list[str]]:
    out = io.StringIO()
    CsvWriter(out, **options).writerows(rows)
    return list(csv.reader(io.StringIO(out.getvalue()), **options))  # type: ignore[arg-type]


def test_risky_text_gets_an_apostrophe_and_numbers_stay() -> None:
    [row] = written([[*RISKY, *NUMBERS_AS_TEXT, -5, 1.5, "plain"]])
    assert row[: len(RISKY)] == ["'" + text for text in RISKY]
    assert row[len(RISKY) :] == [*NUMBERS_AS_TEXT, "-5", "1.5", "plain"]


@given(st.text(max_size=20))
def test_reading_back_gives_the_text_written(text: str) -> None:
    assert read_text(csv_text(text)) == text


@pytest.mark.parametrize("write_only", [False, True])
def test_workbook_text_is_a_string_cell(write_only: bool) -> None:
    book = Workbook(write_only=write_only)
    sheet = book.create_sheet("s")
    sheet.append(sheet_row(sheet, [*RISKY, "-12", -5, Decimal("2.5"), "bell\x07"]))
    out = io.BytesIO()
    book.save(out)
    cells = list(openpyxl.load_workbook(io.BytesIO(out.getvalue()))["s"].iter_rows())[0]
    texts = cells[: len(RISKY)]
    assert [c.value for c in texts] == RISKY
    assert {c.data_type for c in texts} == {"s"} and all(c.quotePrefix for c in texts)
    assert [(c.value, c.data_type) for c in cells[len(RISKY) :]] == [
        ("-12", "s"),
        (-5, "n"),
        (2.5, "n"),
        ("bell\ufffd", "s"),
    ]


def test_meter_list_round_trip_keeps_the_position() -> None:
    out = io.StringIO()
    writer = CsvWriter(out, lineterminator="\r\n")
    writer.writerow(["Position", "SecondaryAddress", "BaudRate", "AddressingMode"])
    writer.writerow([ATTACK, "12345678", 2400, "secondary"])
    assert f"'{ATTACK}" in out.getvalue().replace('""', '"')
    [installed] = parse_meter_list(out.getvalue())
    assert installed.position == ATTACK
    assert parse_meter_list(template_csv())  # the template is written the same way


def test_report_templates_write_text_never_as_a_formula(tmp_path: Path) -> None:
    store = open_store(tmp_path, FixedClock(NOW))
    specs = [
        SeriesSpec(b"\x04\x01", "=1+1", "@u", "+d"),
        SeriesSpec(b"\x04\x02", "temperature", "°C"),
        SeriesSpec(b"\x0d\x03", "text", ""),
    ]
    values = [5, Decimal("-0.05"), ATTACK]
    store.put_readings([StoredReading.of("=m", NOW - 60, list(zip(specs, values, strict=True)))])

    _, _, rows = csv_records(rendered(store, 1101)[0].data())
    assert [row[:4] for row in rows] == [
        ["'=m", "'=1+1", "'@u", "'+d"],
        ["'=m", "temperature", "°C", ""],
        ["'=m", "text", "", ""],
    ]
    assert [row[6] for row in rows] == ["5", "-0.05", "'" + ATTACK]

    _, heading, rows = csv_records(rendered(store, 1102)[0].data())
    assert heading[3:] == ["'=1+1 [@u] (+d)", "temperature [°C]", "text"]
    assert rows[0][0] == "'=m" and rows[0][3:] == ["5", "-0.05", "'" + ATTACK]

    book = openpyxl.load_workbook(io.BytesIO(rendered(store, 1112)[0].data()))
    heading, row = list(book.worksheets[1].iter_rows())[:2]
    assert heading[3].value == "=1+1 [@u] (+d)" and heading[3].data_type == "s"
    assert (row[0].value, row[0].data_type) == ("=m", "s")
    assert isinstance(row[1].value, dt.datetime)
    assert [(c.value, c.data_type) for c in row[3:]] == [(5, "n"), (-0.05, "n"), (ATTACK, "s")]


def test_modbus_map_csv_positions_are_text() -> None:
    rig = Rig([meter("00000001", position=ATTACK)])
    rig.reading("00000001", [ENERGY])
    rows = list(csv.DictReader(io.StringIO(map_csv(rig.map.rows(), "big"))))
    assert {r["position"] for r in rows if r["meter_key"]} == {"'" + ATTACK}


def test_system_log_csv_text_is_text(tmp_path: Path) -> None:
    store = open_store(tmp_path, FixedClock(NOW))
    store.log.log(1, "web", "-cmd|' /C calc'!A0")
    store.write(lambda ctx: None)
    out = io.StringIO()
    store.export_system_log(out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[1][1:] == ["1", "warning", "web", "'-cmd|' /C calc'!A0"]
