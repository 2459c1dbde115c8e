"""The Modbus register map: a device block and one fixed-size block per meter (docs/modbus.md).

Two views answer the same registers. Through the gateway's unit id (and 0 and 255), block 0
(registers 0–124) is the device block and meter *n* (its place in the meter list, from 1) is
block *n*: registers 125·n … 125·n + 124. Through a meter's own unit id, that meter's block starts
at register 0 and goes on past 125 registers when the meter has more than 27 values.

A meter block is a 17-register header (state, age, identity) and 4-register value slots, one per
numeric record of the meter's latest good reading, in the order of the records. Every value
occupies the first 1, 2 or 4 registers of its slot (by its data type); the rest of the slot is 0,
so a type override never moves another value. Holding registers (FC 3) and input registers (FC 4)
read the same map. Nothing here does I/O: the server calls ``RegisterMap.read`` per request.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from fractions import Fraction

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.modbus_encoding import (
    ONE,
    DataType,
    encode,
    encode_integer,
    parse_constant,
)
from mbusgw.gateway.services.modbus_csv import MapRow
from mbusgw.gateway.services.modbus_source import (
    MeterState,
    MeterValues,
    ModbusSource,
    SeriesValue,
)
from mbusgw.gateway.settings import ModbusSettings

LAYOUT_VERSION = 2  # 2: the meter id holds the ID's nibbles (BCD), no longer its decimal value
BLOCK_SIZE = 125  # the most registers one read may ask for: a whole block in one request
HEADER_SIZE = 17
SLOT_SIZE = 4
SLOTS_PER_BLOCK = (BLOCK_SIZE - HEADER_SIZE) // SLOT_SIZE  # 27
MAX_METER_INDEX = 65536 // BLOCK_SIZE - 1  # 523: the last block that fits in 65 536 registers
MAX_SLOTS = (65536 - HEADER_SIZE) // SLOT_SIZE
MAX_READ = 125
GATEWAY_ALIASES = (0, 255)
WORD_ORDER_PROBE = 0x12345678
DATE_TYPE = DataType.UINT32  # dates and times are seconds: uint32 unless a series says otherwise

U16, U32 = DataType.UINT16, DataType.UINT32


class ExceptionCode(IntEnum):
    """Modbus exception codes this server answers with."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    GATEWAY_PATH_UNAVAILABLE = 0x0A


class GatewayStatus(IntEnum):
    OK = 0  # every served meter's latest reading succeeded
    WARNING = 1  # some failed
    ERROR = 2  # all failed
    NO_READINGS = 3  # nothing read yet


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    offset: int
    data_type: DataType
    description: str


DEVICE_FIELDS = (
    Field("layout_version", 0, U16, f"version of this register layout ({LAYOUT_VERSION})"),
    Field("gateway_status", 1, U16, "0 ok, 1 some meters failed, 2 all failed, 3 no readings"),
    Field("source", 2, U16, "1 continuous-read snapshot, 2 latest stored values"),
    Field("meters_installed", 3, U16, "meters in the meter list"),
    Field("meters_enabled", 4, U16, "meters served over Modbus"),
    Field("meters_ok", 5, U16, "served meters whose latest reading succeeded"),
    Field("meters_failed", 6, U16, "served meters whose latest reading failed"),
    Field("meters_never", 7, U16, "served meters not read yet"),
    Field("meters_passive", 8, U16, "served meters that are passive (not read)"),
    Field("last_cycle_ms", 9, U32, "duration of the last complete reading cycle, ms"),
    Field("last_cycle_end", 11, U32, "end of the last complete reading cycle, Unix time"),
    Field("gateway_time", 13, U32, "the gateway's clock, Unix time"),
    Field(
        "default_data_type",
        15,
        U16,
        "1 int16 2 uint16 3 int32 4 uint32 5 int64 6 uint64 7 float32 8 float64",
    ),
    Field("word_order", 16, U16, "0 big (most significant word first), 1 little"),
    Field("word_order_probe", 17, U32, "always 0x12345678 (305419896) in the word order"),
    Field("block_size", 19, U16, f"registers per block ({BLOCK_SIZE})"),
    Field("header_size", 20, U16, f"registers of a meter block header ({HEADER_SIZE})"),
    Field("slots_per_block", 21, U16, f"value slots in a block ({SLOTS_PER_BLOCK})"),
    Field(
        "max_meter_index", 22, U16, f"last meter index the gateway view holds ({MAX_METER_INDEX})"
    ),
    Field("gateway_unit_id", 23, U16, "the gateway's unit id"),
)

METER_FIELDS = (
    Field(
        "state",
        0,
        U16,
        "0 ok, 1 latest reading failed (values are older), 2 not read yet, 3 passive",
    ),
    Field("value_count", 1, U16, "value slots in use"),
    Field("age_ms", 2, U32, "age of the values, ms (0xFFFFFFFF: no values)"),
    Field("read_at", 4, U32, "when the values were read, Unix time"),
    Field("attempt_at", 6, U32, "the latest reading attempt, good or failed, Unix time"),
    Field("id", 8, U32, "identification number, its 8 digits as nibbles (0x12345678)"),
    Field("manufacturer", 10, U16, "EN 13757-3 manufacturer code (3 letters, 5 bits each)"),
    Field("version", 11, U16, "meter version"),
    Field("medium", 12, U16, "medium (device type)"),
    Field("access_number", 13, U16, "access number of the latest good telegram"),
    Field("status_byte", 14, U16, "M-Bus status byte of the latest good telegram"),
    Field("meter_index", 15, U16, "place in the meter list, from 1"),
    Field("layout", 16, U16, "checksum of the slot layout: changes when the series move"),
)
AGE = METER_FIELDS[2]
GATEWAY_TIME = next(f for f in DEVICE_FIELDS if f.name == "gateway_time")


@dataclass(frozen=True, slots=True)
class Encoding:
    data_type: DataType
    constant: Fraction
    constant_text: str


@dataclass(frozen=True)
class MeterConfig:
    enabled: bool = True
    unit_id: int = 0
    data_type: DataType | None = None
    constant: str = ""
    series: dict[bytes, tuple[DataType | None, str]] = field(default_factory=dict)


class MapConfig:
    """The Modbus settings resolved once for the hot path."""

    def __init__(self, settings: ModbusSettings) -> None:
        self.gateway_unit_id = settings.unit_id
        self.gateway_ids = frozenset((settings.unit_id, *GATEWAY_ALIASES))
        self.zero_fill = settings.invalid_addresses == "zero_fill"
        self.word_order = settings.word_order
        self.default = Encoding(
            DataType.from_label(settings.data_type),
            parse_constant(settings.constant),
            settings.constant,
        )
        self.meters: dict[str, MeterConfig] = {}
        for key, meter in settings.meters.items():
            self.meters[key] = MeterConfig(
                meter.enabled,
                meter.unit_id,
                DataType.from_label(meter.data_type) if meter.data_type else None,
                meter.constant,
                {
                    bytes.fromhex(series): (
                        DataType.from_label(over.data_type) if over.data_type else None,
                        over.constant,
                    )
                    for series, over in meter.series.items()
                },
            )
        self.unit_ids = {m.unit_id: key for key, m in self.meters.items() if m.unit_id}
        self._no_overrides = MeterConfig()
        self._seconds = Encoding(DATE_TYPE, ONE, "1")

    def meter(self, key: str) -> MeterConfig:
        return self.meters.get(key, self._no_overrides)

    def meter_type(self, key: str) -> DataType:
        return self.meter(key).data_type or self.default.data_type

    def encoding(self, key: str, value: SeriesValue) -> Encoding:
        """Series override, then the meter's, then the service default; dates and times are
        uint32 seconds by default and never scaled."""
        meter = self.meter(key)
        if meter is self._no_overrides:  # the common case: the same encodings for every value
            return self.default if value.scalable else self._seconds
        series_type, series_constant = meter.series.get(value.series, (None, ""))
        if not value.scalable:
            return Encoding(series_type or DATE_TYPE, ONE, "1")
        data_type = series_type or meter.data_type or self.default.data_type
        text = series_constant or meter.constant
        if not text:
            return Encoding(data_type, self.default.constant, self.default.constant_text)
        return Encoding(data_type, parse_constant(text), text)


def _field(fld: Field, value: int | None, word_order: str) -> tuple[int, ...]:
    return encode_integer(value, fld.data_type, word_order)


_PAIR = struct.Struct(">HH")
UINT32_HIGHEST = 0xFFFFFFFE  # 0xFFFFFFFF means "no value"


def _words(registers: Sequence[int]) -> bytes:
    return struct.pack(f">{len(registers)}H", *registers)


def _unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def layout_checksum(values: Sequence[SeriesValue]) -> int:
    """Low 16 bits of the CRC-32 of the series identities in slot order."""
    crc = 0
    for value in values:
        crc = zlib.crc32(bytes((len(value.series),)) + value.series, crc)
    return crc & 0xFFFF


class RegisterMap:
    """Answers register reads from an image of the map: each meter's registers encoded once
    per reading, as big-endian bytes, and the device block.

    Without a keeper (``published`` false) a request encodes what changed since the last one
    (the tests read the map that way). The service runs ``modbus.keep_image``: it prepares
    the image of each meter whose values change, off the request path, and sets
    ``published``; from then on a request never asks the source or encodes a block: it
    copies bytes from the image and writes in the age (and the device block's clock).
    """

    def __init__(self, config: MapConfig, source: ModbusSource, clock: WallClock) -> None:
        self.config = config
        self.source = source
        self.clock = clock
        self.published = False
        self._meter_list: Sequence[Meter] | None = None
        self._by_key: dict[str, tuple[int, Meter]] = {}
        self._by_index: dict[int, Meter] = {}
        # meter key -> (values, meter, index, registers as bytes with the age left as no value)
        self._encoded: dict[str, tuple[MeterValues, Meter, int, bytes]] = {}
        self._device: tuple[object, bytes] | None = None  # (what it was made from, bytes)
        self._served: list[tuple[int, Meter]] = []
        # the state of each served meter in the image, and how many are in each state: kept
        # as blocks are encoded, so the device block does not look at every meter per change
        self._counted: dict[str, MeterState] = {}
        self._counts = dict.fromkeys(MeterState, 0)
        # meter key -> the values of its latest encoding and their slots' registers: a value
        # equal to the one in the same slot last time (most records between two readings) is
        # not encoded again
        self._slots: dict[str, tuple[tuple[SeriesValue, ...], list[tuple[int, ...]]]] = {}
        self._version = 0  # counts image changes: the device block follows them

    # ---------------------------------------------------------------- requests

    def read(self, unit_id: int, address: int, count: int) -> list[int] | ExceptionCode:
        """The registers ``address … address + count - 1`` of ``unit_id``'s view, or the
        exception code to answer with."""
        result = self.read_bytes(unit_id, address, count)
        if isinstance(result, ExceptionCode):
            return result
        return list(struct.unpack(f">{len(result) // 2}H", result))

    def read_bytes(self, unit_id: int, address: int, count: int) -> bytes | ExceptionCode:
        """``read`` as the bytes of a response: two per register, big-endian."""
        if not 1 <= count <= MAX_READ:
            return ExceptionCode.ILLEGAL_DATA_VALUE
        if address < 0 or address + count > 65536:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        self._refresh_meters()
        now = self.clock.now()
        if unit_id in self.config.gateway_ids:
            return self._read_gateway_view(address, count, now)
        key = self.config.unit_ids.get(unit_id)
        found = self._by_key.get(key) if key is not None else None
        if found is None or not self.config.meter(found[1].key).enabled:
            return ExceptionCode.GATEWAY_PATH_UNAVAILABLE
        index, meter = found
        data = self._meter_bytes(meter, index, now)
        start, end = 2 * address, 2 * (address + count)
        if end <= len(data):
            return data[start:end]
        if not self.config.zero_fill:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        return data[start:end] + bytes(end - max(start, len(data)))

    def _read_gateway_view(self, address: int, count: int, now: datetime) -> bytes | ExceptionCode:
        end = address + count
        parts: list[bytes] = []
        for block in range(address // BLOCK_SIZE, (end - 1) // BLOCK_SIZE + 1):
            base = block * BLOCK_SIZE
            low, high = max(address, base) - base, min(end, base + BLOCK_SIZE) - base
            data = self._gateway_block(block, now)
            if data is not None:
                parts.append(data[2 * low : 2 * high])
            elif self.config.zero_fill:
                parts.append(bytes(2 * (high - low)))
            else:
                return ExceptionCode.ILLEGAL_DATA_ADDRESS
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _gateway_block(self, block: int, now: datetime) -> bytes | None:
        if block == 0:
            return self._device_bytes(now)
        meter = self._by_index.get(block)
        if meter is None or block > MAX_METER_INDEX or not self.config.meter(meter.key).enabled:
            return None
        return self._meter_bytes(meter, block, now)

    # ---------------------------------------------------------------- meters

    def _refresh_meters(self) -> None:
        meters = self.source.meters()
        if meters is self._meter_list:
            return
        self._meter_list = meters
        self._by_key = {m.key: (i, m) for i, m in enumerate(meters, start=1)}
        self._by_index = {i: m for i, m in enumerate(meters, start=1)}
        self._served = [
            (i, m) for i, m in self._by_index.items() if self.config.meter(m.key).enabled
        ]
        for key in set(self._encoded) - set(self._by_key):
            del self._encoded[key]
            self._slots.pop(key, None)
            self._count(key, None)
        self._version += 1

    def served_meters(self) -> list[tuple[int, Meter]]:
        self._refresh_meters()
        return list(self._served)

    def _count(self, key: str, state: MeterState | None) -> None:
        """Move a served meter's entry in the state counts (None: it left the image)."""
        if not self.config.meter(key).enabled:
            return
        before = self._counted.pop(key, None)
        if before is not None:
            self._counts[before] -= 1
        if state is not None:
            self._counted[key] = state
            self._counts[state] += 1

    def prepare(self, keys: Iterable[str] | None = None) -> Iterator[None]:
        """Encode the image of the meters ``keys`` (None: all) from the source's values,
        yielding after each meter so that the caller can let requests in between."""
        self._refresh_meters()
        wanted = self._by_key if keys is None else keys
        for key in wanted:
            found = self._by_key.get(key)
            if found is not None:
                self._image(found[1], found[0], self.source.values(found[1]))
                yield

    def _image(self, meter: Meter, index: int, values: MeterValues) -> bytes:
        cached = self._encoded.get(meter.key)
        if cached is not None and cached[0] is values and cached[1] is meter and cached[2] == index:
            return cached[3]
        data = _words(self.encode_meter(meter, index, values))
        self._encoded[meter.key] = (values, meter, index, data)
        self._count(meter.key, values.state)
        self._version += 1
        return data

    def _meter_bytes(self, meter: Meter, index: int, now: datetime) -> bytes:
        cached = self._encoded.get(meter.key)
        if self.published and cached is not None and cached[1] is meter and cached[2] == index:
            data, read_at = cached[3], cached[0].read_at
        else:  # not prepared (the meter list changed), or no keeper: encode what changed
            values = self.source.values(meter)
            data, read_at = self._image(meter, index, values), values.read_at
        if read_at is None:
            return data
        age = round((now - read_at).total_seconds() * 1000)
        start = 2 * AGE.offset
        return b"".join((data[:start], self._uint32(age), data[start + 4 :]))

    def encode_meter(self, meter: Meter, index: int, values: MeterValues) -> list[int]:
        """A meter's registers without the age (which the read fills in)."""
        order = self.config.word_order
        identity = values.identity
        header = {
            "state": int(values.state),
            "value_count": len(values.values),
            "age_ms": None,
            "read_at": _unix(values.read_at),
            "attempt_at": _unix(values.attempt_at),
            "id": identity.id,
            "manufacturer": identity.manufacturer,
            "version": identity.version,
            "medium": identity.medium,
            "access_number": identity.access_number,
            "status_byte": identity.status_byte,
            "meter_index": index,
            "layout": layout_checksum(values.values),
        }
        registers: list[int] = []
        for fld in METER_FIELDS:
            registers += _field(fld, header[fld.name], order)
        before, before_slots = self._slots.get(meter.key, ((), []))
        slots: list[tuple[int, ...]] = []
        for place, value in enumerate(values.values[:MAX_SLOTS]):
            if place < len(before) and (before[place] is value or before[place] == value):
                words = before_slots[place]
            else:
                encoding = self.config.encoding(meter.key, value)
                words = encode(value.number, encoding.data_type, encoding.constant, order)
                words += (0,) * (SLOT_SIZE - len(words))
            slots.append(words)
            registers += words
        self._slots[meter.key] = (values.values, slots)
        unused = encode(None, self.config.meter_type(meter.key), ONE, order)
        unused_slot = list(unused) + [0] * (SLOT_SIZE - len(unused))
        for _ in range(len(values.values), SLOTS_PER_BLOCK):
            registers += unused_slot
        return registers

    # ---------------------------------------------------------------- device block

    def _device_bytes(self, now: datetime) -> bytes:
        """The device block from the image (made again only when a meter's image changed, or
        the cycle), with the clock written in."""
        made_from = (self._version, self.source.last_cycle())
        if not self.published or self._device is None or self._device[0] != made_from:
            self._device = (made_from, _words(self.device_block(now)))
        data = self._device[1]
        start = 2 * GATEWAY_TIME.offset
        return b"".join((data[:start], self._uint32(int(now.timestamp())), data[start + 4 :]))

    def _uint32(self, value: int) -> bytes:
        """A uint32 field's registers as ``encode`` makes them (saturated below the no-value
        marker), without its exact arithmetic: the age and the clock are written per request."""
        value = min(max(value, 0), UINT32_HIGHEST)
        high, low = value >> 16, value & 0xFFFF
        return _PAIR.pack(high, low) if self.config.word_order == "big" else _PAIR.pack(low, high)

    def prepare_device(self) -> None:
        """Make the device block from the image now, rather than on the next request."""
        self._device_bytes(self.clock.now())

    def _state(self, meter: Meter) -> MeterState:
        cached = self._encoded.get(meter.key) if self.published else None
        return cached[0].state if cached is not None else self.source.state(meter)

    def _state_counts(self, served: Sequence[tuple[int, Meter]]) -> dict[MeterState, int]:
        """How many served meters are in each state: from the counts the image keeps once it
        holds every served meter, else by asking for each meter's state."""
        if self.published and len(self._counted) == len(served):
            return self._counts
        counts = dict.fromkeys(MeterState, 0)
        for _, meter in served:
            counts[self._state(meter)] += 1
        return counts

    def device_block(self, now: datetime) -> list[int]:
        self._refresh_meters()
        served = self._served
        counts = self._state_counts(served)
        ok, failed = counts[MeterState.OK], counts[MeterState.FAILED]
        if ok and failed:
            status = GatewayStatus.WARNING
        elif failed:
            status = GatewayStatus.ERROR
        elif ok:
            status = GatewayStatus.OK
        else:
            status = GatewayStatus.NO_READINGS
        cycle = self.source.last_cycle()
        fields = {
            "layout_version": LAYOUT_VERSION,
            "gateway_status": int(status),
            "source": int(self.source.kind),
            "meters_installed": len(self._by_index),
            "meters_enabled": len(served),
            "meters_ok": ok,
            "meters_failed": failed,
            "meters_never": counts[MeterState.NEVER],
            "meters_passive": counts[MeterState.PASSIVE],
            "last_cycle_ms": round(cycle.duration_s * 1000) if cycle else None,
            "last_cycle_end": _unix(cycle.finished_at) if cycle else None,
            "gateway_time": _unix(now),
            "default_data_type": int(self.config.default.data_type),
            "word_order": 0 if self.config.word_order == "big" else 1,
            "word_order_probe": WORD_ORDER_PROBE,
            "block_size": BLOCK_SIZE,
            "header_size": HEADER_SIZE,
            "slots_per_block": SLOTS_PER_BLOCK,
            "max_meter_index": MAX_METER_INDEX,
            "gateway_unit_id": self.config.gateway_unit_id,
        }
        registers = [0] * BLOCK_SIZE
        for fld in DEVICE_FIELDS:
            words = _field(fld, fields[fld.name], self.config.word_order)
            registers[fld.offset : fld.offset + len(words)] = words
        return registers

    # ---------------------------------------------------------------- the map as a table

    def rows(self) -> list[MapRow]:
        """Every register item of the current map, for the CSV download and the docs."""
        unit = self.config.gateway_unit_id
        rows = [
            MapRow(
                unit, fld.offset, fld.data_type, "1", field=fld.name, description=fld.description
            )
            for fld in DEVICE_FIELDS
        ]
        for index, meter in self.served_meters():
            values = self.source.values(meter)
            if index <= MAX_METER_INDEX:
                rows += self._meter_rows(unit, index * BLOCK_SIZE, index, meter, values, True)
            own = self.config.meter(meter.key).unit_id
            if own:
                rows += self._meter_rows(own, 0, index, meter, values, False)
        return rows

    def _meter_rows(
        self, unit: int, base: int, index: int, meter: Meter, values: MeterValues, in_block: bool
    ) -> list[MapRow]:
        common = {"meter_index": index, "meter_key": meter.key, "position": meter.position}
        rows = [
            MapRow(
                unit,
                base + fld.offset,
                fld.data_type,
                "1",
                field=fld.name,
                description=fld.description,
                **common,
            )
            for fld in METER_FIELDS
        ]
        shown = values.values[:SLOTS_PER_BLOCK] if in_block else values.values[:MAX_SLOTS]
        for slot, value in enumerate(shown, start=1):
            encoding = self.config.encoding(meter.key, value)
            rows.append(
                MapRow(
                    unit,
                    base + HEADER_SIZE + (slot - 1) * SLOT_SIZE,
                    encoding.data_type,
                    encoding.constant_text,
                    field=f"value_{slot}",
                    description="" if value.scalable else "seconds (date/time)",
                    value=value,
                    **common,
                )
            )
        return rows
