"""The Modbus register map as a table: one row per register item (``MapRow``, made by
``RegisterMap.rows``) and its CSV export for PLC tools."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from mbusgw.core.units import Function, quantity_name, unit_symbol
from mbusgw.gateway.cells import CsvWriter
from mbusgw.gateway.modbus_encoding import DataType
from mbusgw.gateway.services.modbus_source import SeriesValue


@dataclass(frozen=True, slots=True)
class MapRow:
    """One register item: a header field, or a value slot with its series."""

    unit_id: int
    address: int
    data_type: DataType
    constant: str
    meter_index: int | None = None
    meter_key: str = ""
    position: str = ""
    field: str = ""
    description: str = ""
    value: SeriesValue | None = None


CSV_COLUMNS = (
    "unit_id", "address", "reference", "registers", "data_type", "constant", "word_order",
    "meter_index", "meter_key", "position", "field", "series", "quantity", "unit", "function",
    "storage", "tariff", "subunit", "description",
)  # fmt: skip


def map_csv(rows: Sequence[MapRow], word_order: str) -> str:
    """The register map as CSV: ``address`` is the 0-based protocol address, ``reference`` the
    1-based register number many PLC tools show (holding register 40001 = address 0). A value
    row names its series: the DIF/VIF bytes, the decoder's quantity, unit and function names."""
    out = io.StringIO()
    writer = CsvWriter(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        value = row.value
        series = ["", "", "", "", "", "", ""]
        if value is not None:
            series = [
                value.series.hex().upper(),
                quantity_name(value.quantity),
                unit_symbol(value.unit),
                _function_name(value.function),
                value.storage,
                value.tariff,
                value.subunit,
            ]
        index = "" if row.meter_index is None else row.meter_index
        writer.writerow(
            [row.unit_id, row.address, row.address + 1, row.data_type.registers]
            + [row.data_type.label, row.constant, word_order, index, row.meter_key]
            + [row.position, row.field, *series, row.description]
        )
    return out.getvalue()


def _function_name(code: int) -> str:
    try:
        return Function(code).name.lower()
    except ValueError:
        return f"function_{code}"
