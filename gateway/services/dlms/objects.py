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
from dlms_cosem.dlms_data import encode_variable_integer
from dlms_cosem.enumerations import DataAccessResult
from dlms_cosem.time import ClockStatus, datetime_to_bytes

from mbusgw.gateway.meters import Meter
from mbusgw.gateway.services.dlms import obis
from mbusgw.gateway.services.modbus_source import MeterValues, SeriesValue

NULL = b"\x00"
# A-XDR type tags
NULL_TAG, ARRAY, STRUCTURE, OCTET_STRING, INTEGER, LONG_UNSIGNED, UNSIGNED, ENUM = (
    0,
    1,
    2,
    9,
    15,
    18,
    17,
    22,
)
FLOAT64_TAG = 24
SCALER_RANGE = range(-128, 128)


class ClassId(IntEnum):
    DATA = 1
    REGISTER = 3
    CLOCK = 8
    ASSOCIATION_LN = 15


# how many attributes each class has (its version below), and which of them are served
ATTRIBUTES = {ClassId.DATA: 2, ClassId.REGISTER: 3, ClassId.CLOCK: 9, ClassId.ASSOCIATION_LN: 9}
VERSIONS = {ClassId.DATA: 0, ClassId.REGISTER: 0, ClassId.CLOCK: 0, ClassId.ASSOCIATION_LN: 1}
SERVED = {
    ClassId.DATA: {1, 2},
    ClassId.REGISTER: {1, 2, 3},
    ClassId.CLOCK: {1, 2, 3, 4},  # logical_name, time, time_zone, status
    ClassId.ASSOCIATION_LN: {1, 2, 3, 8},  # logical_name, object_list, partners, status
}
READ_ONLY, NO_ACCESS = 1, 0  # attribute access modes
ASSOCIATED = 2  # association_status


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

    def get(self, class_id: int, code: obis.Obis, attribute: int, client_sap: int = 0) -> Answer:
        """An attribute's data; ``client_sap`` is the association's client (for the
        association object's own attributes)."""
        found = self._association(client_sap) if code == obis.ASSOCIATION else self._find(code)
        if found is None:
            return DataAccessResult.OBJECT_UNDEFINED
        kind, read = found
        if class_id != kind:
            return DataAccessResult.OBJECT_CLASS_INCONSISTENT
        if not 1 <= attribute <= ATTRIBUTES[kind]:
            return DataAccessResult.OBJECT_UNDEFINED
        if attribute not in SERVED[kind]:
            return DataAccessResult.READ_WRITE_DENIED
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

    def _association(self, client_sap: int) -> tuple[ClassId, Callable[[int], Answer]]:
        def read(attribute: int) -> Answer:
            if attribute == 2:
                listed = [(ClassId.ASSOCIATION_LN, obis.ASSOCIATION), *self.object_list()]
                return object_list_data(listed)
            if attribute == 3:  # associated_partners_id: client SAP, server SAP
                return bytes((STRUCTURE, 2, INTEGER, client_sap, LONG_UNSIGNED, 0, 1))
            return dlms_data.EnumData(ASSOCIATED).to_bytes()  # association_status

        return ClassId.ASSOCIATION_LN, read

    def object_list(self) -> list[tuple[ClassId, obis.Obis]]:
        """Every object of the logical device but the association itself, in a stable order:
        the gateway's, then each meter's (values, identification, medium codes)."""
        found = [
            (ClassId.CLOCK, obis.CLOCK),
            (ClassId.DATA, obis.LOGICAL_DEVICE_NAME),
            (ClassId.DATA, obis.DEVICE_ID),
            (ClassId.DATA, obis.FIRMWARE_VERSION),
        ]
        for index, meter in enumerate(self._meters()[: obis.MAX_METERS], 1):
            b, f = obis.channel(index)
            ordered = self._order(meter)
            found += [
                (ClassId.REGISTER, (0, b, 24, 2, e, f)) for e in range(1, len(ordered.values) + 1)
            ]
            found.append((ClassId.DATA, (0, b, 96, 1, 0, f)))
            medium = ordered.source.identity.medium
            found += [
                (ClassId.REGISTER, code) for code in obis.medium_codes(medium, b, f, ordered.fields)
            ]
        return found

    def _clock(self, attribute: int) -> Answer:
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


def object_list_data(objects: Sequence[tuple[ClassId, obis.Obis]]) -> bytes:
    """The object_list attribute (Association LN version 1): per object its class, version,
    logical name and access rights (served attributes read-only, the others no access, no
    methods)."""
    parts = [bytes((ARRAY,)), encode_variable_integer(len(objects))]
    rights = {kind: _access_rights(kind) for kind in ClassId}
    for kind, code in objects:
        parts.append(
            bytes((STRUCTURE, 4, LONG_UNSIGNED))
            + kind.to_bytes(2, "big")
            + bytes((UNSIGNED, VERSIONS[kind], OCTET_STRING, 6, *code))
            + rights[kind]
        )
    return b"".join(parts)


def _access_rights(kind: ClassId) -> bytes:
    count = ATTRIBUTES[kind]
    attributes = b"".join(
        bytes((STRUCTURE, 3, INTEGER, attribute, ENUM))
        + bytes((READ_ONLY if attribute in SERVED[kind] else NO_ACCESS, NULL_TAG))
        for attribute in range(1, count + 1)
    )
    return bytes((STRUCTURE, 2, ARRAY)) + encode_variable_integer(count) + attributes + b"\x01\x00"


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
