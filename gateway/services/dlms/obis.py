"""Where each meter's values are in the OBIS name space (the mapping of docs/dlms.md).

A meter is addressed by its place in the meter list (index 1 is the first, as in the Modbus
map). The standard names up to 64 M-Bus channels (value group B = 1..64); the gateway holds up
to 512 meters, so meters are taken in groups of 64: group 0 (meters 1..64) has F = 255 as the
standard has it, group g >= 1 has F = 128 + g, from the manufacturer-specific range of F.
"""

from __future__ import annotations

from collections.abc import Sequence

from mbusgw.core.units import Function, Quantity, Unit

Obis = tuple[int, int, int, int, int, int]

CHANNELS = 64  # value group B: the standard's M-Bus channels 1..64
GROUP_F = 128  # F = 128 + g for the meters of group g >= 1 (manufacturer-specific F)
NOT_USED = 255  # F of the standard's objects
MAX_VALUES = 255  # value group E numbers a meter's values 1..255
MAX_METERS = CHANNELS * (NOT_USED - GROUP_F)  # groups 0..126: F = 255, 129..254

M_BUS_VALUE = (0, 24, 2)  # A, C, D of 0-b:24.2.e.f: the meter's values, E = 1 the main one
METER_ID = (0, 96, 1, 0)  # A, C, D, E of 0-b:96.1.0.f: the meter's identification number

CLOCK: Obis = (0, 0, 1, 0, 0, 255)
ASSOCIATION: Obis = (0, 0, 40, 0, 0, 255)  # the current association (Association LN)
LOGICAL_DEVICE_NAME: Obis = (0, 0, 42, 0, 0, 255)
DEVICE_ID: Obis = (0, 0, 96, 1, 0, 255)
FIRMWARE_VERSION: Obis = (0, 0, 0, 2, 0, 255)

# The main register, by quantity: energy before volume (a heat meter's volume is secondary)
MAIN_QUANTITIES = (Quantity.ENERGY, Quantity.VOLUME)

_ELECTRICITY = ((1, 1, 8, Quantity.ENERGY),)  # 1-b:1.8.e active energy import
_HEAT = ((6, 1, 0, Quantity.ENERGY), (6, 2, 0, Quantity.VOLUME))
_COOLING = ((5, 1, 0, Quantity.ENERGY), (5, 2, 0, Quantity.VOLUME))
_GAS = ((7, 3, 0, Quantity.VOLUME),)  # 7-b:3.0.e volume at metering conditions
_COLD_WATER = ((8, 1, 0, Quantity.VOLUME),)
_HOT_WATER = ((9, 1, 0, Quantity.VOLUME),)
MEDIUM_REGISTERS: dict[int, tuple[tuple[int, int, int, Quantity], ...]] = {
    0x02: _ELECTRICITY,
    0x03: _GAS,
    0x04: _HEAT,
    0x0C: _HEAT,
    0x0D: _HEAT,
    0x0A: _COOLING,
    0x0B: _COOLING,
    0x07: _COLD_WATER,
    0x16: _COLD_WATER,
    0x06: _HOT_WATER,
    0x15: _HOT_WATER,
}
"""Per EN 13757-3 device type: the medium's own codes ``A-b:C.D.e.f`` (E = the tariff, 0 the
total), each an alias of the meter's first current value of that quantity and tariff."""

OTHER_UNIT = 254  # the Blue Book's "other unit": no unit code of its own
COUNT = 255  # "count": no unit
DLMS_UNITS: dict[int, int] = {
    Unit.NONE: COUNT,
    Unit.HCA: COUNT,
    Unit.WH: 30,
    Unit.J: 25,
    Unit.M3: 13,
    Unit.KG: 20,
    Unit.S: 7,
    Unit.MIN: 6,
    Unit.H: 5,
    Unit.DAY: 4,
    Unit.MONTH: 2,
    Unit.YEAR: 1,
    Unit.W: 27,
    Unit.J_PER_H: 26,
    Unit.M3_PER_H: 15,
    Unit.DEG_C: 9,
    Unit.K: 52,
    Unit.BAR: 24,
    Unit.V: 35,
    Unit.A: 33,
    Unit.CURRENCY: 10,
    Unit.PERCENT: 56,
    Unit.DBM: 70,
}
"""EN 13757-3 units (``mbusgw.core.units.Unit``) to the Blue Book's unit enumeration; the
others (kg/h, °F, ft³, US gallons, baud, bit times) are "other unit"."""


def dlms_unit(unit: int) -> int:
    return DLMS_UNITS.get(unit, OTHER_UNIT)


def channel(index: int) -> tuple[int, int]:
    """B and F of the meter at ``index`` (1-based)."""
    group, b = divmod(index - 1, CHANNELS)
    return b + 1, NOT_USED if group == 0 else GROUP_F + group


def meter_index(b: int, f: int) -> int | None:
    """The meter index that B and F name (None: they name no meter)."""
    if not 1 <= b <= CHANNELS:
        return None
    if f == NOT_USED:
        group = 0
    elif GROUP_F < f < NOT_USED:
        group = f - GROUP_F
    else:
        return None
    return group * CHANNELS + b


Fields = tuple[int, int, int, int, int]
"""What places a value: (quantity, storage, function, tariff, subunit)."""


def current_of(values: Sequence[Fields], quantity: int, tariff: int) -> int | None:
    """The first current value (storage 0, instantaneous, of the meter itself) of ``quantity``
    in ``tariff`` (0: the total)."""
    for i, (q, storage, function, t, subunit) in enumerate(values):
        if (q, t, storage, function, subunit) == (quantity, tariff, 0, Function.INSTANTANEOUS, 0):
            return i
    return None


def value_order(values: Sequence[Fields]) -> list[int]:
    """The order of a meter's values under E = 1, 2, ...: the main register first (the first
    current total energy, else volume), then the others in record order."""
    main = None
    for quantity in MAIN_QUANTITIES:
        main = current_of(values, quantity, 0)
        if main is not None:
            break
    rest = [i for i in range(len(values)) if i != main]
    return ([main] if main is not None else []) + rest[: MAX_VALUES - (main is not None)]


def medium_alias(
    medium: int | None, a: int, c: int, d: int, e: int, values: Sequence[Fields]
) -> int | None:
    """The value that the medium code ``A-b:C.D.e`` names for a meter of ``medium`` (None: no
    such value): its first current value of that quantity in tariff ``e``."""
    for code_a, code_c, code_d, quantity in MEDIUM_REGISTERS.get(
        -1 if medium is None else medium, ()
    ):
        if (code_a, code_c, code_d) == (a, c, d):
            return current_of(values, quantity, e)
    return None


def medium_codes(medium: int | None, b: int, f: int, values: Sequence[Fields]) -> list[Obis]:
    """Every medium code that names one of ``values`` (the object list's part of them)."""
    codes = []
    for a, c, d, quantity in MEDIUM_REGISTERS.get(-1 if medium is None else medium, ()):
        tariffs = sorted({fields[3] for fields in values if fields[0] == quantity})
        codes += [
            (a, b, c, d, tariff, f)
            for tariff in tariffs
            if current_of(values, quantity, tariff) is not None
        ]
    return codes


def obis_text(code: Obis) -> str:
    a, b, c, d, e, f = code
    return f"{a}-{b}:{c}.{d}.{e}.{f}"
