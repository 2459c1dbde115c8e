"""Reports a field engineer hands over: the installation report (.xlsx, the four tabs of
SPEC §1.2) and the meter settings report (addressing, baud rate, addresses of every meter)."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mbusgw.gateway.facade import CsvWriter, GatewayHandle, sheet_row
from mbusgw.gateway.settings import masked
from mbusgw.web import device_ops
from mbusgw.web import operations as ops

if TYPE_CHECKING:
    from openpyxl import Workbook

SETTINGS_COLUMNS = (
    "Key", "Position", "SecondaryAddress", "PrimaryAddress", "EnhancedAddress", "BaudRate",
    "AddressingMode", "Interface", "State", "MultiTelegram", "MultiTelegramLimit",
)  # fmt: skip


def _settings_row(meter: dict[str, Any]) -> list[Any]:
    return [
        meter["key"],
        meter["position"],
        meter["secondary_address"] or "",
        "" if meter["primary_address"] is None else meter["primary_address"],
        meter["enhanced_address"] or "",
        meter["baud"],
        "|".join(meter["addressing"]),
        meter["interface"],
        meter["state"],
        meter["multi_telegram"],
        meter["multi_telegram_limit"],
    ]


def meter_settings_csv(gw: GatewayHandle) -> str:
    out = io.StringIO()
    writer = CsvWriter(out, lineterminator="\r\n")
    writer.writerow(SETTINGS_COLUMNS)
    for meter in gw.meters:
        writer.writerow(_settings_row(ops.meter_dict(gw, meter)))
    return out.getvalue()


def _flatten(prefix: str, data: Any, rows: list[tuple[str, Any]]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            _flatten(f"{prefix}.{key}" if prefix else key, value, rows)
    else:
        rows.append((prefix, data if isinstance(data, int | float | str | bool) else str(data)))


def _cell(value: Any) -> Any:
    """Spreadsheet cells: exact decimals as numbers where Excel can hold them, text otherwise."""
    if isinstance(value, Decimal):
        return float(value) if abs(value.as_tuple().exponent) <= 15 else str(value)
    if value is None or isinstance(value, int | float | str | bool):
        return value
    return str(value)


def _sheet(book: Workbook, title: str, header: list[str], rows: list[list[Any]]) -> None:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    sheet = book.create_sheet(title)
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append(sheet_row(sheet, [_cell(v) for v in row]))
    for index, name in enumerate(header, start=1):
        width = max([len(str(name))] + [len(str(r[index - 1])) for r in rows[:200]])
        sheet.column_dimensions[get_column_letter(index)].width = min(60, width + 2)
    sheet.freeze_panes = "A2"


def installation_report(gw: GatewayHandle) -> bytes:
    """Four tabs: device settings, installed meters, latest reading per meter, Modbus."""
    from openpyxl import Workbook  # imported when needed: it is large and rarely used

    book = Workbook()
    book.remove(book.active)
    info = device_ops.device_info(gw)
    device: list[tuple[str, Any]] = [
        ("device.name", info["name"]),
        ("device.hostname", info["hostname"]),
        ("device.version", info["version"]),
        ("device.report_time", info["now"]),
        ("device.addresses", ", ".join(a["address"] for a in info["addresses"])),
    ]
    _flatten("", masked(gw.settings), device)
    _sheet(book, "Device settings", ["Setting", "Value"], [list(r) for r in device])

    listing = ops.list_meters(gw, passive=True)
    meters = listing["meters"]
    _sheet(
        book,
        "Meters",
        [*SETTINGS_COLUMNS, "Manufacturer", "Status", "LastGood", "LastError"],
        [
            _settings_row(m)
            + [
                m["manufacturer"] or "",
                m["health"]["status"],
                m["health"]["last_good"] or "",
                m["health"]["last_error"] or "",
            ]
            for m in meters
        ],
    )

    readings = []
    for m in meters:
        latest = m["latest"]
        if not latest:
            readings.append([m["key"], m["position"], "", "", "", "", "", m["health"]["status"]])
            continue
        for value in latest["values"]:
            readings.append(
                [
                    m["key"],
                    m["position"],
                    value["read_at"],
                    value["quantity"],
                    value["description"],
                    value["value"],
                    value["unit"],
                    m["health"]["status"],
                ]
            )
    _sheet(
        book,
        "Latest readings",
        ["Key", "Position", "ReadAt", "Quantity", "Description", "Value", "Unit", "Status"],
        readings,
    )

    modbus = gw.settings.modbus
    modbus_rows = []
    for index, m in enumerate(meters, start=1):
        per_meter = modbus.meters.get(m["key"])
        modbus_rows.append(
            [
                index,
                m["key"],
                m["position"],
                "yes" if m["modbus_enabled"] else "no",
                per_meter.unit_id if per_meter and per_meter.unit_id else "",
                (per_meter.data_type if per_meter and per_meter.data_type else modbus.data_type),
            ]
        )
    _sheet(
        book,
        "Modbus",
        ["Block", "Key", "Position", "Enabled", "UnitId", "DataType"],
        modbus_rows,
    )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
