"""Installed meters: the model, the meter-list CSV (manual table 5) and the capacity rule.

A meter list is validated as a whole before anything is installed: every bad row is reported
with its line number and column, and a list with any error installs nothing. Meters beyond the
configured capacity are installed *passive*: kept in the list, not read.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from mbusgw.gateway.cells import CsvWriter, read_text
from mbusgw.gateway.csvtable import RowError, UnreadableCsv, records

CAPACITIES = (8, 32, 64, 128, 256, 512)
BAUD_RATES = (300, 2400, 9600)
COLUMNS = (
    "Position",
    "SecondaryAddress",
    "BaudRate",
    "AddressingMode",
    "PrimaryAddress",
    "EnhancedAddress",
    "Interface",  # the wired line (empty: the one chosen on upload, else the first)
)
REQUIRED_COLUMNS = COLUMNS[:4]
MAX_ROWS = 4096
Identity = tuple[str, int, int]
"""What a meter's replies say it is: manufacturer, version, medium."""
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
        ("Heat meter, flat 3", "12345678", "2400", "secondary", "", "", ""),
        ("Water meter, cellar", "", "2400", "primary", "5", "", ""),
        ("Gas meter, flat 5", "23456789", "2400", "esecondary", "", "70012345", ""),
        ("Water meter, flat 4 (wireless)", "87654321", "2400", "esecondary", "", WIRELESS, ""),
    ]
    out = io.StringIO()
    CsvWriter(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def parse_meter_list(
    text: str,
    *,
    interface: str = "default",
    lines: Collection[str] | None = None,
    receivers: Collection[str] = (),
    wireless_by_default: bool = False,
) -> list[Meter]:
    """Parse a meter list (comma or semicolon separated, as spreadsheets save it).

    ``Interface`` names the wired line a meter is on (one of ``lines``; None: any name, for
    tools without the gateway's configuration); empty, it is ``interface``. ``EnhancedAddress``
    says how a meter is reached: empty, or the 8-digit fabrication number of an enhanced
    secondary selection, on a wired line; ``wireless`` (the gateway binds it to the receiver
    hearing it best) or the name of one of ``receivers`` for a wireless meter. With
    ``wireless_by_default`` (a gateway with receivers and no wired line) an esecondary row
    with no EnhancedAddress is a wireless meter, as in the manual.
    """
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise MeterListError([RowError(1, None, "the file is empty")])
    first = text.splitlines()[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    place = _Placement(interface, lines, receivers, wireless_by_default)
    errors: list[RowError] = []
    meters: list[Meter] = []
    try:
        _parse_records(records(text, delimiter=delimiter), place, meters, errors)
    except UnreadableCsv as unreadable:
        errors.append(unreadable.error)
    if errors:
        raise MeterListError(errors)
    if not meters:
        raise MeterListError([RowError(2, None, "the list has no meters")])
    return meters


@dataclass(frozen=True)
class _Placement:
    """Where the rows of a meter list may go: the default line, the lines and receivers."""

    interface: str
    lines: Collection[str] | None
    receivers: Collection[str]
    wireless_by_default: bool


def _parse_records(
    rows: Iterable[tuple[int, list[str]]],
    place: _Placement,
    meters: list[Meter],
    errors: list[RowError],
) -> None:
    rows = iter(rows)
    header = [name.strip() for name in next(rows)[1]]
    lowered = {name.lower(): index for index, name in enumerate(header)}
    missing = [name for name in REQUIRED_COLUMNS if name.lower() not in lowered]
    if missing:
        need = ", ".join(COLUMNS)
        errors.append(RowError(1, None, f"missing column(s) {', '.join(missing)}; need {need}"))
        return
    known = {name.lower() for name in COLUMNS}
    errors += [
        RowError(1, name, "unknown column") for name in header if name and name.lower() not in known
    ]
    seen: dict[str, int] = {}
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(meters) + len(errors) >= MAX_ROWS:
            errors.append(RowError(line, None, f"more than {MAX_ROWS} rows"))
            return

        def cell(name: str, row: list[str] = row) -> str:
            index = lowered.get(name.lower())
            # read_text: a list the gateway exported comes back with its positions unchanged
            return read_text(row[index].strip()) if index is not None and index < len(row) else ""

        meter, row_errors = _parse_row(cell, line, place)
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


def _parse_row(
    cell: Callable[[str], str], line: int, place: _Placement
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
    receiver = _wireless_receiver(enhanced, modes, place.receivers, place.wireless_by_default)
    if receiver is not None and modes and AddressingMode.PRIMARY in modes:
        errors.append(
            RowError(line, "AddressingMode", "a wireless meter is addressed by its secondary ID")
        )
    if receiver is None and enhanced is not None and not SECONDARY_PATTERN.fullmatch(enhanced):
        known = ", ".join((WIRELESS, *place.receivers))
        errors.append(
            RowError(
                line,
                "EnhancedAddress",
                f"{enhanced!r} is neither a fabrication number (8 digits) nor {known}",
            )
        )
    if receiver is None and enhanced is None and modes and AddressingMode.ESECONDARY in modes:
        errors.append(
            RowError(
                line,
                "EnhancedAddress",
                "required for esecondary addressing: the meter's 8-digit fabrication number",
            )
        )
    interface, interface_error = _line_of(cell("Interface"), receiver is not None, place)
    if interface_error:
        errors.append(RowError(line, "Interface", interface_error))
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


def _line_of(name: str, wireless: bool, place: _Placement) -> tuple[str, str | None]:
    """The wired line a row's ``Interface`` cell names, or why it cannot be used."""
    if not name:
        return place.interface, None
    if wireless:
        return name, "a wireless meter's receiver is named in EnhancedAddress"
    if place.lines is not None and name not in place.lines:
        configured = ", ".join(place.lines) or "none"
        return name, f"{name!r} is not a configured M-Bus line (configured: {configured})"
    return name, None


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


def parse_for_gateway(
    text: str, lines: Sequence[str], receivers: Sequence[str], interface: str | None = None
) -> list[Meter]:
    """A meter list for a gateway with the wired ``lines`` and wireless ``receivers``: rows
    that name no ``Interface`` go to ``interface`` (default: the first wired line)."""
    if interface is not None and interface not in lines:
        configured = ", ".join(lines) or "none"
        message = f"interface {interface!r} is not configured (configured: {configured})"
        raise MeterListError([RowError(1, None, message)])
    new = parse_meter_list(
        text,
        interface=interface or next(iter(lines), "default"),
        lines=lines,
        receivers=receivers,
        wireless_by_default=bool(receivers) and not lines,
    )
    unreachable = [m.key for m in new if not m.wireless and m.interface not in lines]
    if unreachable:
        message = f"no wired M-Bus line is configured for {', '.join(unreachable)}"
        raise MeterListError([RowError(1, None, message)])
    return new


@dataclass(frozen=True)
class Merge:
    """A search's meters merged into the list."""

    meters: list[Meter]  # the whole list after
    added: list[Meter]  # found and new: appended
    known: list[Meter]  # found but installed already: left exactly as they were
    passive: list[str] = field(default_factory=list)  # keys made passive: over the capacity


def merge_found(existing: Iterable[Meter], found: Iterable[Meter], capacity: int) -> Merge:
    """The one way a search's meters join the list: a meter found that is installed already
    (the same key or ID, or on the same line at the same primary address) keeps every setting
    it has; the others are appended."""
    if capacity not in CAPACITIES:
        raise ValueError(f"capacity {capacity} is not one of {CAPACITIES}")
    before = list(existing)
    meters = list(before)
    known: list[Meter] = []
    added: list[Meter] = []
    for meter in found:
        if any(_same_meter(meter, m) for m in meters):
            known.append(meter)
        else:
            meters.append(meter)
            added.append(meter)
    merged = apply_capacity(meters, capacity)
    return Merge(merged, added, known, over_capacity(before, merged))


def _same_meter(found: Meter, installed: Meter) -> bool:
    if found.key == installed.key:
        return True
    if found.secondary_address and found.secondary_address == installed.secondary_address:
        return True
    return (
        not installed.wireless
        and found.primary_address is not None
        and installed.interface == found.interface
        and installed.primary_address == found.primary_address
    )


def learnt_identities(
    meters: Iterable[Meter], heard: Mapping[str, Identity]
) -> dict[str, Identity]:
    """Of the identities ``heard`` in good replies (by meter key), those a meter has not
    recorded yet: recording only these keeps a reading from costing a meter-list write."""
    return {
        meter.key: heard[meter.key]
        for meter in meters
        if meter.key in heard
        and (meter.manufacturer, meter.version, meter.medium) != heard[meter.key]
    }


def with_identities(meters: Iterable[Meter], identities: Mapping[str, Identity]) -> list[Meter]:
    """``meters`` with each identity in ``identities`` recorded on its meter."""
    out = []
    for meter in meters:
        identity = identities.get(meter.key)
        if identity is not None:
            manufacturer, version, medium = identity
            meter = replace(meter, manufacturer=manufacturer, version=version, medium=medium)
        out.append(meter)
    return out


def over_capacity(before: Iterable[Meter], after: Iterable[Meter]) -> list[str]:
    """The meters a change made passive for want of capacity: enabled, not read, and read
    (or not installed) before it."""
    passive_before = {m.key for m in before if m.enabled and not m.active}
    return [m.key for m in after if m.enabled and not m.active and m.key not in passive_before]


def capacity_warning(
    passive: Sequence[str], capacity: int | None = None, named: int = 20
) -> str | None:
    """The warning when meters were made passive because the capacity is reached; names the
    first ``named`` of them (the result that carries it lists them all)."""
    if not passive:
        return None
    names = ", ".join(passive[:named])
    more = f" and {len(passive) - named} more" if len(passive) > named else ""
    limit = f" of {capacity} active meters" if capacity is not None else ""
    return (
        f"capacity{limit} reached: {len(passive)} meter(s) installed passive (not read): "
        f"{names}{more}"
    )


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
