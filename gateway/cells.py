"""Cells of the CSV files and workbooks the gateway writes: text stays text.

A spreadsheet evaluates a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, a tab
or a carriage return) as a formula, so a meter position such as ``=HYPERLINK(…)`` or a text a
meter sent would run in the reader's spreadsheet (CSV or formula injection). Following OWASP's
guidance such text is written with a leading apostrophe, which spreadsheets read as "this is
text"; in a workbook the cell is a string cell marked with Excel's quote prefix instead, so the
text itself stays exact. Numbers stay numbers, also as text: ``-12,5`` is a value, not a formula.

Files the gateway reads back (the meter list, key files) drop the apostrophe again with
``read_text``: ``read_text(csv_text(x)) == x`` for every text.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import IO, Any

FORMULA_START = frozenset("=+-@\t\r")
_LOOK_CLOSER = FORMULA_START | {"'"}  # the first characters of text that may need the apostrophe
_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?")
# the control characters XML 1.0 does not allow (its Char production), which a cell cannot hold
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def starts_formula(text: str) -> bool:
    """Would a spreadsheet read this text (or, after dropping our apostrophes, what remains) as
    a formula? Apostrophes already in front are counted in, so that escaping is reversible."""
    rest = text.lstrip("'")
    return rest[:1] in FORMULA_START and not _NUMBER.fullmatch(rest)


def csv_text(value: Any) -> Any:
    """A CSV cell: text that would start a formula gets a leading apostrophe; anything else
    (numbers, other text, None) is returned as it is."""
    if isinstance(value, str) and value[:1] in _LOOK_CLOSER and starts_formula(value):
        return "'" + value
    return value


def read_text(text: str) -> str:
    """A cell of a CSV file read back: the apostrophe ``csv_text`` added is dropped."""
    if text[:1] == "'" and starts_formula(text[1:]):
        return text[1:]
    return text


class CsvWriter:
    """``csv.writer`` whose every text cell goes through ``csv_text``."""

    def __init__(self, out: IO[str], **options: Any) -> None:
        self._writer = csv.writer(out, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([csv_text(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        writerow = self._writer.writerow
        for row in rows:
            writerow([csv_text(v) for v in row])


def xml_text(text: str) -> str:
    """Text a workbook cell can hold: the control characters XML forbids become U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def sheet_row(sheet: Any, values: Iterable[Any]) -> list[Any]:
    """A row for ``sheet.append`` (openpyxl, normal or write-only) in which no text is a
    formula: text a spreadsheet would start to evaluate becomes a string cell with the quote
    prefix (so editing it in Excel keeps it text); other text is a string cell already, and
    other values are left to openpyxl."""
    row: list[Any] = []
    for value in values:
        if isinstance(value, str):
            value = _text_cell(sheet, value) if starts_formula(value) else xml_text(value)
        row.append(value)
    return row


def _text_cell(sheet: Any, text: str) -> Any:
    from openpyxl.cell import WriteOnlyCell  # imported when needed: it is large

    cell = WriteOnlyCell(sheet, xml_text(text))
    cell.data_type = "s"  # openpyxl took a leading "=" for a formula
    cell.quotePrefix = True
    return cell
