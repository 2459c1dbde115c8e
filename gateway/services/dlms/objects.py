"""The COSEM objects of the gateway's one logical device, answered attribute by attribute.

Every GET is looked up afresh: a meter's objects follow the meter list and its latest stored
values (the value source keeps them per meter and hands out the same ``MeterValues`` while
nothing changed, so the order of a meter's values is worked out once per change). The A-XDR
encoding of the data is dlms-cosem's, except for float64, which it lacks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from dlms_cosem import dlms_data
from dlms_cosem.enumerations import DataAccessResult
from dlms_cosem.time import ClockStatus, datetime_to_bytes

from mbusgw.gateway.meters import Meter
from mbusgw.gateway.services.dlms import obis
from mbusgw.gateway.services.modbus_source import MeterValues, SeriesValue

NULL = b"\x00"
FLOAT64_TAG = 24
SCALER_RANGE = range(-128, 128)


class ClassId(IntEnum):
    DATA = 1
    REGISTER = 3
    CLOCK = 8


ATTRIBUTES = {ClassId.DATA: 2, ClassId.REGISTER: 3, ClassId.CLOCK: 9}  # how many each class has
CLOCK_SERVED = {1, 2, 3, 4}  # logical_name, time, time_zone, status; the others are denied


@dataclass(frozen=True)
class Identity:
    """What the identity objects tell."""

    device_name: str
    version: str


@dataclass(frozen=True, slots=True)
class _Ordered:
    """A meter's values in the order of E, with what each one's class answers."""

    source: MeterValues
    values: tuple[SeriesValue, ...]  # E = 1, 2, ...
    fields: tuple[obis.Fields, ...]  # of ``values``, for the medium codes


Answer = bytes | DataAccessResult
"""The attribute's A-XDR data, or why there is none."""


class CosemModel:
    def __init__(
        self,
        meters: Callable[[], Sequence[Meter]],
        values: Callable[[Meter], MeterValues],
        local_now: Callable[[], datetime],
        identity: Callable[[], Identity],
    ) -> None:
        self._meters = meters
        self._values = values
        self._local_now = local_now  # aware, in the gateway's time zone
        self._identity = identity
        self._ordered: dict[str, _Ordered] = {}

    def get(self, class_id: int, code: obis.Obis, attribute: int) -> Answer:
        found = self._find(code)
        if found is None:
            return DataAccessResult.OBJECT_UNDEFINED
        kind, read = found
        if class_id != kind:
            return DataAccessResult.OBJECT_CLASS_INCONSISTENT
        if not 1 <= attribute <= ATTRIBUTES[kind]:
            return DataAccessResult.OBJECT_UNDEFINED
        if attribute == 1:
            return dlms_data.OctetStringData(bytes(code)).to_bytes()
        return read(attribute)

    def _find(self, code: obis.Obis) -> tuple[ClassId, Callable[[int], Answer]] | None:
        fixed = self._fixed(code)
        if fixed is not None:
            return fixed
        a, b, c, d, e, f = code
        index = obis.meter_index(b, f)
        meters = self._meters()
        if index is None or index > len(meters):
            return None
        meter = meters[index - 1]
        if (a, c, d) == obis.M_BUS_VALUE:
            ordered = self._order(meter)
            if not 1 <= e <= len(ordered.values):
                return None
            return ClassId.REGISTER, _register(ordered.values[e - 1])
        if (a, c, d, e) == obis.METER_ID:
            number = self._values(meter).identity.id
            text = "" if number is None else f"{number:08X}"
            return ClassId.DATA, _data(dlms_data.VisibleStringData(text))
        ordered = self._order(meter)
        slot = obis.medium_alias(ordered.source.identity.medium, a, c, d, e, ordered.fields)
        if slot is None:
            return None
        return ClassId.REGISTER, _register(ordered.values[slot])

    def _fixed(self, code: obis.Obis) -> tuple[ClassId, Callable[[int], Answer]] | None:
        if code == obis.CLOCK:
            return ClassId.CLOCK, self._clock
        identity = self._identity()
        if code == obis.LOGICAL_DEVICE_NAME:  # the Blue Book allows 16 octets
            name = identity.device_name.encode()[:16]
            return ClassId.DATA, _data(dlms_data.OctetStringData(name))
        if code == obis.DEVICE_ID:
            return ClassId.DATA, _data(_visible(identity.device_name))
        if code == obis.FIRMWARE_VERSION:
            return ClassId.DATA, _data(_visible(identity.version))
        return None

    def _clock(self, attribute: int) -> Answer:
        if attribute not in CLOCK_SERVED:
            return DataAccessResult.READ_WRITE_DENIED
        now = self._local_now()
        summer = bool(now.dst())
        if attribute == 2:
            stamp = datetime_to_bytes(now, ClockStatus(daylight_saving_active=summer))
            return dlms_data.OctetStringData(stamp).to_bytes()
        if attribute == 3:  # minutes from local time to UTC, as the Blue Book counts them
            offset = now.utcoffset()
            minutes = -int(offset.total_seconds() // 60) if offset is not None else 0
            return dlms_data.LongData(minutes).to_bytes()
        return dlms_data.UnsignedIntegerData(0x80 if summer else 0).to_bytes()

    def _order(self, meter: Meter) -> _Ordered:
        current = self._values(meter)
        cached = self._ordered.get(meter.key)
        if cached is not None and cached.source is current:
            return cached
        numbers = [value for value in current.values if value.scalable]
        fields = [(v.quantity, v.storage, v.function, v.tariff, v.subunit) for v in numbers]
        order = obis.value_order(fields)
        ordered = _Ordered(
            current, tuple(numbers[i] for i in order), tuple(fields[i] for i in order)
        )
        self._ordered[meter.key] = ordered
        return ordered


def _visible(text: str) -> dlms_data.VisibleStringData:
    """A visible-string holds ASCII only: other characters become "?"."""
    return dlms_data.VisibleStringData(text.encode("ascii", "replace").decode("ascii"))


def _data(value: dlms_data.BaseDlmsData) -> Callable[[int], Answer]:
    return lambda attribute: value.to_bytes()


def _register(value: SeriesValue) -> Callable[[int], Answer]:
    def read(attribute: int) -> Answer:
        scaler, data = register_value(value)
        if attribute == 2:
            return data
        unit = obis.dlms_unit(value.unit)
        return dlms_data.DataStructure(
            [dlms_data.IntegerData(scaler), dlms_data.EnumData(unit)]
        ).to_bytes()

    return read


def register_value(value: SeriesValue) -> tuple[int, bytes]:
    """The Register's scaler and its value's A-XDR data: the exact mantissa as long64 with the
    exponent as scaler, a float64 for a meter's real, null-data for a value without a number."""
    number = value.number
    if number is None:
        return 0, NULL
    if number.exponent not in SCALER_RANGE:  # beyond an integer scaler: a float, scaler 0
        mantissa = number.mantissa if number.real is None else number.real
        return 0, _float64(float(mantissa) * 10.0**number.exponent)
    if number.real is not None:
        return number.exponent, _float64(number.real)
    return number.exponent, dlms_data.Long64Data(number.mantissa).to_bytes()


def _float64(value: float) -> bytes:
    return bytes([FLOAT64_TAG]) + struct.pack(">d", value)
