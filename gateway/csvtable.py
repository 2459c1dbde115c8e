"""Reading the CSV files a person uploads (meter lists, key files) record by record, so that a
file the ``csv`` module cannot read is refused with the line and the column at fault.

``RowError`` is the one shape of a complaint about an uploaded table: ``line`` (counted from 1,
the header), ``column`` (None for the whole row) and ``message``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


class UnreadableCsv(ValueError):
    """The ``csv`` module could not read a record; ``error`` says where and why."""

    def __init__(self, error: RowError) -> None:
        super().__init__(str(error))
        self.error = error


def records(text: str, dialect: Any = csv.excel, **options: Any) -> Iterator[tuple[int, list[str]]]:
    """The records of ``text`` (read as ``csv.reader(…, dialect, **options)`` reads them) with
    the line each begins on; the first is the header.

    Raises ``UnreadableCsv`` naming the line, and the column when one field is at fault (a
    field longer than the ``csv`` module's limit)."""
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(iter(lines), dialect, **options)
    header: list[str] = []
    while True:
        start = reader.line_num  # lines read so far: the next record begins after them
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise UnreadableCsv(_fault(lines, start, header, reader.dialect, error)) from None
        if not header:
            header = [name.strip() for name in row]
        yield start + 1, row


def _fault(
    lines: list[str], start: int, header: list[str], dialect: Any, error: csv.Error
) -> RowError:
    index = _oversized_field(lines, start, dialect)
    if index is None:
        return RowError(start + 1, None, f"not readable as CSV ({error})")
    column = header[index] if index < len(header) and header[index] else f"field {index + 1}"
    return RowError(start + 1, column, f"longer than {csv.field_size_limit()} characters")


def _oversized_field(lines: list[str], start: int, dialect: Any) -> int | None:
    """The position in its record of the first field longer than the ``csv`` limit, found by
    walking the record's text (quotes respected); None when no field is too long."""
    limit = csv.field_size_limit()
    index = length = 0
    quoted = False
    for line in lines[start:]:
        for char in line:
            if char == dialect.quotechar:
                quoted = not quoted
            elif char == dialect.delimiter and not quoted:
                index, length = index + 1, 0
                continue
            elif char in "\r\n" and not quoted:
                return None
            length += 1
            if length > limit:
                return index
    return None
