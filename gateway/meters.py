"""Installed meters: the model, the meter-list CSV (manual table 5) and the capacity rule.

A meter list is validated as a whole before anything is installed: every bad row is reported
with its line number and column, and a list with any error installs nothing. Meters beyond the
configured capacity are installed *passive*: kept in the list, not read.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from mbusgw.gateway.cells import CsvWriter, read_text

CAPACITIES = (8, 32, 64, 128, 256, 512)
BAUD_RATES = (300, 2400, 9600)
COLUMNS = (
    "Position",
    "SecondaryAddress",
    "BaudRate",
    "AddressingMode",
    "PrimaryAddress",
    "EnhancedAddress",
)
REQUIRED_COLUMNS = COLUMNS[:4]
MAX_ROWS = 4096
SECONDARY_PATTERN = re.compile(r"[0-9A-Fa-f]{8}")
# EnhancedAddress of a wireless meter whose receiver the gateway chooses (the strongest).
WIRELESS = "wireless"


class AddressingMode(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    ESECONDARY = "esecondary"


class MultiTelegram(StrEnum):
    OFF = "off"  # read only the first telegram
    AUTO = "auto"  # follow "more records follow" up to the meter's limit


@dataclass(frozen=True)
class Meter:
    """One installed meter. ``key`` identifies it for ever (store series, logs, APIs)."""

    key: str
    position: str
    secondary_address: str | None
    baud: int
    addressing: tuple[AddressingMode, ...]  # first mode, then the fallbacks in order
    primary_address: int | None = None
    enhanced_address: str | None = None
    interface: str = "default"
    enabled: bool = True  # the per-meter state the user chose (active/passive)
    active: bool = True  # enabled and within the capacity: the meter is read
    multi_telegram: MultiTelegram = MultiTelegram.AUTO
    multi_telegram_limit: int = 8
    key_id: str | None = None  # linked wireless M-Bus key
    manufacturer: str | None = None  # learnt from the meter's first reply
    version: int | None = None
    medium: int | None = None
    timing: dict[str, float] = field(default_factory=dict)  # per-meter table 8 overrides
    wireless: bool = False  # heard through a receiver; ``interface`` is the receiver it is
    # bound to (the one that hears it best; "" before one is known)

    @property
    def mode(self) -> AddressingMode:
        return self.addressing[0]


def meter_key(secondary: str | None, interface: str, primary: int | None) -> str:
    """Secondary-addressed meters are known by their ID; primary-only ones by line + address."""
    if secondary:
        return secondary.upper()
    return f"{interface}:p{primary}"


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


class MeterListError(ValueError):
    """The meter list has errors; nothing was installed. ``errors`` has one entry per problem."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"meter list rejected, nothing installed: {shown}{more}")


def template_csv() -> str:
    """The downloadable meter-list template: the header and one example of each mode."""
    rows = [
        COLUMNS,
        ("Heat meter, flat 3", "12345678", "2400", "secondary", "", ""),
        ("Water meter, cellar", "", "2400", "primary", "5", ""),
        ("Water meter, flat 4 (wireless)", "87654321", "2400", "esecondary", "", WIRELESS),
    ]
    out = io.StringIO()
    CsvWriter(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def parse_meter_list(
    text: str,
    *,
    interface: str = "default",
    receivers: Collection[str] = (),
    wireless_by_default: bool = False,
) -> list[Meter]:
    """Parse a meter list (comma or semicolon separated, as spreadsheets save it).

    ``EnhancedAddress`` says how a meter is reached: empty, or the 8-digit fabrication number
    of an enhanced secondary selection, on the wired line ``interface``; ``wireless`` (the
    gateway binds it to the receiver hearing it best) or the name of one of ``receivers`` for
    a wireless meter. With ``wireless_by_default`` (a gateway with receivers and no wired
    line) an esecondary row with no EnhancedAddress is a wireless meter, as in the manual.
    """
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise MeterListError([RowError(1, None, "the file is empty")])
    dialect = ";" if text.splitlines()[0].count(";") > text.splitlines()[0].count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=dialect)
    header = [name.strip() for name in next(reader)]
    lowered = {name.lower(): index for index, name in enumerate(header)}
    missing = [name for name in REQUIRED_COLUMNS if name.lower() not in lowered]
    if missing:
        raise MeterListError(
            [
                RowError(
                    1, None, f"missing column(s) {', '.join(missing)}; need {', '.join(COLUMNS)}"
                )
            ]
        )
    known = {name.lower() for name in COLUMNS}
    unknown = [name for name in header if name and name.lower() not in known]
    errors = [RowError(1, name, "unknown column") for name in unknown]
    meters: list[Meter] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(meters) + len(errors) >= MAX_ROWS:
            errors.append(RowError(line, None, f"more than {MAX_ROWS} rows"))
            break

        def cell(name: str, row: list[str] = row) -> str:
            index = lowered.get(name.lower())
            # read_text: a list the gateway exported comes back with its positions unchanged
            return read_text(row[index].strip()) if index is not None and index < len(row) else ""

        meter, row_errors = _parse_row(cell, line, interface, receivers, wireless_by_default)
        errors += row_errors
        if meter is None:
            continue
        if meter.key in seen:
            errors.append(
                RowError(line, None, f"meter {meter.key} is also on line {seen[meter.key]}")
            )
            continue
        seen[meter.key] = line
        meters.append(meter)
    if errors:
        raise MeterListError(errors)
    if not meters:
        raise MeterListError([RowError(2, None, "the list has no meters")])
    return meters


def _parse_row(
    cell: Callable[[str], str],
    line: int,
    interface: str,
    receivers: Collection[str] = (),
    wireless_by_default: bool = False,
) -> tuple[Meter | None, list[RowError]]:
    errors: list[RowError] = []
    position = cell("Position")
    if len(position) > 128:
        errors.append(RowError(line, "Position", "longer than 128 characters"))
    secondary = cell("SecondaryAddress") or None
    if secondary is not None and not SECONDARY_PATTERN.fullmatch(secondary):
        errors.append(RowError(line, "SecondaryAddress", f"{secondary!r} is not 8 digits"))
    baud_text = cell("BaudRate") or "2400"
    baud = int(baud_text) if baud_text.isdigit() else None
    if baud not in BAUD_RATES:
        errors.append(RowError(line, "BaudRate", f"{baud_text!r} is not one of 300, 2400, 9600"))
    modes = _parse_modes(cell("AddressingMode"))
    if modes is None:
        errors.append(
            RowError(
                line,
                "AddressingMode",
                f"{cell('AddressingMode')!r} is not primary, secondary or esecondary"
                " (fallbacks: e.g. 'secondary|primary')",
            )
        )
    primary_text = cell("PrimaryAddress")
    primary = int(primary_text) if primary_text.isdigit() else None
    if primary_text and (primary is None or primary > 250):
        errors.append(RowError(line, "PrimaryAddress", f"{primary_text!r} is not 0-250"))
    if modes and AddressingMode.PRIMARY in modes and primary is None and not primary_text:
        errors.append(RowError(line, "PrimaryAddress", "required for primary addressing"))
    wants_secondary = {AddressingMode.SECONDARY, AddressingMode.ESECONDARY} & set(modes or ())
    if wants_secondary and secondary is None:
        errors.append(RowError(line, "SecondaryAddress", "required for secondary addressing"))
    enhanced = cell("EnhancedAddress") or None
    receiver = _wireless_receiver(enhanced, modes, receivers, wireless_by_default)
    if receiver is not None and modes and AddressingMode.PRIMARY in modes:
        errors.append(
            RowError(line, "AddressingMode", "a wireless meter is addressed by its secondary ID")
        )
    if receiver is None and enhanced is not None and not SECONDARY_PATTERN.fullmatch(enhanced):
        known = ", ".join((WIRELESS, *receivers))
        errors.append(
            RowError(
                line,
                "EnhancedAddress",
                f"{enhanced!r} is neither a fabrication number (8 digits) nor {known}",
            )
        )
    if errors or modes is None or baud is None:
        return None, errors
    meter = Meter(
        key=meter_key(secondary, interface, primary),
        position=position or (secondary or f"primary {primary}"),
        secondary_address=secondary.upper() if secondary else None,
        baud=baud,
        addressing=(AddressingMode.ESECONDARY,) if receiver is not None else modes,
        primary_address=primary,
        enhanced_address=receiver or enhanced,
        interface=interface if receiver is None else receiver,
        wireless=receiver is not None,
    )
    return meter, []


def _wireless_receiver(
    enhanced: str | None,
    modes: tuple[AddressingMode, ...] | None,
    receivers: Collection[str],
    wireless_by_default: bool,
) -> str | None:
    """The receiver a row names ("" = the gateway chooses), or None for a wired meter."""
    if enhanced is None:
        wireless = wireless_by_default and modes == (AddressingMode.ESECONDARY,)
        return "" if wireless else None
    if enhanced.lower() == WIRELESS:
        return ""
    return enhanced if enhanced in receivers else None


def _parse_modes(text: str) -> tuple[AddressingMode, ...] | None:
    names = [part.strip().lower() for part in re.split(r"[|/]", text) if part.strip()]
    try:
        modes = tuple(AddressingMode(name) for name in names)
    except ValueError:
        return None
    if not modes or len(set(modes)) != len(modes):
        return None
    return modes


def install(existing: Iterable[Meter], new: Iterable[Meter], capacity: int) -> list[Meter]:
    """The meter list after installing ``new``: known meters are updated in place (keeping
    their per-meter settings), others appended; the first ``capacity`` are active, the rest
    passive."""
    if capacity not in CAPACITIES:
        raise ValueError(f"capacity {capacity} is not one of {CAPACITIES}")
    merged = {meter.key: meter for meter in existing}
    for meter in new:
        old = merged.get(meter.key)
        if old is None:
            merged[meter.key] = meter
        else:
            merged[meter.key] = replace(
                old,
                position=meter.position,
                secondary_address=meter.secondary_address,
                baud=meter.baud,
                addressing=meter.addressing,
                primary_address=meter.primary_address,
                enhanced_address=meter.enhanced_address,
                interface=meter.interface,
                wireless=meter.wireless,
            )
    return apply_capacity(list(merged.values()), capacity)


def apply_capacity(meters: list[Meter], capacity: int) -> list[Meter]:
    """In list order, the first ``capacity`` enabled meters are active; the rest are passive."""
    result = []
    active = 0
    for meter in meters:
        keep = meter.enabled and active < capacity
        active += keep
        result.append(meter if meter.active == keep else replace(meter, active=keep))
    return result


def meter_to_record(meter: Meter) -> dict:
    """The meter as plain JSON data for the store's installation table."""
    record = {f: getattr(meter, f) for f in Meter.__dataclass_fields__}
    record["addressing"] = [mode.value for mode in meter.addressing]
    record["multi_telegram"] = meter.multi_telegram.value
    return record


def meter_from_record(record: dict) -> Meter:
    """Inverse of ``meter_to_record``; fields added in later versions take their defaults."""
    known = {k: v for k, v in record.items() if k in Meter.__dataclass_fields__}
    known["addressing"] = tuple(AddressingMode(mode) for mode in known["addressing"])
    if "multi_telegram" in known:
        known["multi_telegram"] = MultiTelegram(known["multi_telegram"])
    return Meter(**known)
