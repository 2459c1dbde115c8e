"""What goes into the store and what comes out: readings, series, exact values, meter log rows.

Values stay exact, in the decoder's terms (docs/core.md): an integer or decimal is an int64
mantissa and an int8 decimal exponent (value = mantissa × 10**exponent); a float only where the
meter sent one (real × 10**exponent); dates and datetimes as seconds since the epoch of the
meter's local time; times of day as seconds since midnight; text, bytes and BCD digits with
errors as they came; plus the record's flags (invalid, summer time, ...). ``encode_value`` and
``decode_value`` convert between these and the Python values the decoder gives.
"""

from __future__ import annotations

import datetime as dt
import enum
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from mbusgw.core.units import Flag, ValueKind
from mbusgw.gateway.errors import InvalidReading

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
NO_TIME = INT64_MIN  # "the meter sent no timestamp" in int64 time columns
NO_STATUS_BYTE = -1  # "status byte not logged" in the meter log
MAX_SIGNATURE = 64
MAX_NAME = 255
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DATE = dt.date(1970, 1, 1)
_F8 = struct.Struct("<d")
_I8 = struct.Struct("<q")


# Kind codes are the decoder's (``mbusgw.core.units.ValueKind``): stored data, never renumbered.
# TEXT, BYTES and BCD_ERROR keep their value in the row's blob area (mantissa = byte length).
BLOB_KINDS = frozenset({ValueKind.TEXT, ValueKind.BYTES, ValueKind.BCD_ERROR})
IS_BLOB = np.zeros(256, bool)  # indexed by kind code: vectorised "is this a blob kind"
IS_BLOB[sorted(BLOB_KINDS)] = True
KIND_COUNT = len(ValueKind)


class ReadingStatus(enum.IntEnum):
    """Outcome of one reading, as written to the meter log (persistent codes)."""

    OK = 0
    NO_RESPONSE = 1
    BAD_FRAME = 2
    DECODE_ERROR = 3
    DECRYPT_ERROR = 4
    SELECT_FAILED = 5
    COLLISION = 6
    OTHER_ERROR = 7


class StatusByteMode(enum.StrEnum):
    """When the M-Bus status byte goes into the meter log (SPEC §3)."""

    ALWAYS = "always"
    NEVER = "never"
    ON_CHANGE = "on_change"
    ON_ERROR = "on_error"


# EN 13757-3 status byte: bits 0-1 application error, 2 power low, 3 permanent, 4 temporary error.
STATUS_BYTE_ERROR_BITS = 0x1F


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """A meter's record identity and what it measures.

    ``signature`` is the record's DIF..VIFE bytes (data type, function, storage, tariff,
    subunit, VIF and its extensions): the same record in the next telegram has the same bytes.
    Quantity and unit are stored by *name*, so the store outlives changes of code tables.
    """

    signature: bytes
    quantity: str
    unit: str
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.signature, bytes) or not 0 < len(self.signature) <= MAX_SIGNATURE:
            raise InvalidReading(f"series signature must be 1..{MAX_SIGNATURE} bytes")
        for text in (self.quantity, self.unit, self.description):
            if not isinstance(text, str) or len(text.encode()) > MAX_NAME:
                raise InvalidReading(f"series names must be text of at most {MAX_NAME} bytes")


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """A stored series: its id, the meter it belongs to and its spec."""

    id: int
    meter: str
    signature: bytes
    quantity: str
    unit: str
    description: str


@dataclass(frozen=True, slots=True)
class MeterInfo:
    id: int
    name: str
    created: int  # seconds since the epoch when the store first saw the meter


@dataclass(frozen=True, slots=True)
class HeaderIdentity:
    """Who sent a reading's first telegram, as its header says (the fields of
    ``mbusgw.core.Header``; None where the CI carries no such field). Kept with the raw
    telegrams, so no service decodes a stored telegram again to learn it."""

    id: str | None = None
    manufacturer: str | None = None
    version: int | None = None
    medium: int | None = None
    access_number: int | None = None
    status: int | None = None

    @classmethod
    def of(cls, header: object) -> HeaderIdentity:
        """From a decoded telegram's ``Header``."""
        return cls(*(getattr(header, name) for name in HEADER_FIELDS))


HEADER_FIELDS = ("id", "manufacturer", "version", "medium", "access_number", "status")


@dataclass(slots=True)
class StoredReading:
    """One reading of one meter: what the meter log records, and its values in columns.

    Column ``i`` of ``kind``/``mantissa``/``exponent``/``real``/``flags``/``blobs`` is the value
    of ``series[i]``. ``mantissa`` is used for integer/decimal, date and time kinds, ``real`` for
    REAL, ``blobs[i]`` for TEXT and BCD_ERROR (``str``) and BYTES (``bytes``); ``flags`` are the
    decoder's record flags (``None``: all zero). A failed reading has no values but is logged.
    """

    meter: str
    received_at: int
    series: Sequence[SeriesSpec] = ()
    kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    mantissa: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    exponent: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    real: np.ndarray | None = None
    blobs: Sequence[bytes | str | None] | None = None
    flags: np.ndarray | None = None
    meter_time: int | None = None
    frames: Sequence[bytes] = ()
    status: ReadingStatus = ReadingStatus.OK
    duration_ms: int = 0
    retries: int = 0
    error: str = ""
    status_byte: int | None = None
    header: HeaderIdentity | None = None  # of the first telegram, stored with the frames

    @classmethod
    def of(
        cls,
        meter: str,
        received_at: int,
        values: Iterable[tuple[SeriesSpec, object]] = (),
        **fields: object,
    ) -> StoredReading:
        """Build a reading from ``(spec, python value)`` pairs (see ``encode_value``)."""
        specs: list[SeriesSpec] = []
        kinds: list[int] = []
        mantissas: list[int] = []
        exponents: list[int] = []
        reals: list[float] = []
        blobs: list[bytes | str | None] = []
        for spec, value in values:
            kind, mantissa, exponent, blob = encode_value(value)
            specs.append(spec)
            kinds.append(kind)
            mantissas.append(0 if kind == ValueKind.REAL else mantissa)
            exponents.append(exponent)
            reals.append(_F8.unpack(_I8.pack(mantissa))[0] if kind == ValueKind.REAL else 0.0)
            blobs.append(value if kind == ValueKind.TEXT else blob)  # type: ignore[arg-type]
        return cls(
            meter,
            received_at,
            specs,
            np.array(kinds, np.uint8),
            np.array(mantissas, np.int64),
            np.array(exponents, np.int8),
            np.array(reals, np.float64),
            blobs if any(b is not None for b in blobs) else None,
            **fields,  # type: ignore[arg-type]
        )


def encode_value(value: object) -> tuple[ValueKind, int, int, bytes | None]:
    """A Python value as ``(kind, mantissa, exponent, blob)``; REAL's mantissa is its bits."""
    if value is None:
        return ValueKind.NONE, 0, 0, None
    if isinstance(value, bool):
        raise InvalidReading("a boolean is not a meter value")
    if isinstance(value, int):
        mantissa, exponent = value, 0
        while not INT64_MIN <= mantissa <= INT64_MAX and mantissa % 10 == 0 and exponent < 127:
            mantissa, exponent = mantissa // 10, exponent + 1
        return ValueKind.DECIMAL, _check_mantissa(mantissa), exponent, None
    if isinstance(value, Decimal):
        sign, digits, exponent = value.as_tuple()
        if not isinstance(exponent, int):
            raise InvalidReading(f"{value} is not a finite decimal")
        mantissa = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        return ValueKind.DECIMAL, _check_mantissa(mantissa), _check_exponent(exponent), None
    if isinstance(value, float):
        return ValueKind.REAL, _I8.unpack(_F8.pack(value))[0], 0, None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return ValueKind.DATETIME, (value - _EPOCH) // dt.timedelta(seconds=1), 0, None
    if isinstance(value, dt.date):
        return ValueKind.DATE, (value - _EPOCH_DATE).days * 86_400, 0, None
    if isinstance(value, dt.time):
        return ValueKind.TIME, value.hour * 3600 + value.minute * 60 + value.second, 0, None
    if isinstance(value, str):
        blob = value.encode()
        return ValueKind.TEXT, len(blob), 0, blob
    if isinstance(value, bytes | bytearray | memoryview):
        blob = bytes(value)
        return ValueKind.BYTES, len(blob), 0, blob
    raise InvalidReading(f"cannot store a {type(value).__name__} as a meter value")


def decode_value(
    kind: int, mantissa: int, exponent: int, blob: bytes | None = None, flags: int = 0
) -> object:
    """The exact Python value of a stored value, as the decoder's ``Record.value`` gives it."""
    if kind == ValueKind.DECIMAL:
        if exponent >= 0:
            return mantissa * 10**exponent
        return Decimal((int(mantissa < 0), tuple(int(d) for d in str(abs(mantissa))), exponent))
    if kind == ValueKind.REAL:
        real = _F8.unpack(_I8.pack(mantissa))[0]
        return real * 10.0**exponent if exponent else real
    if kind in (ValueKind.DATE, ValueKind.DATETIME):
        if flags & Flag.INVALID and mantissa == 0:
            return None
        if kind == ValueKind.DATE:
            return _EPOCH_DATE + dt.timedelta(days=mantissa // 86_400)
        return _EPOCH + dt.timedelta(seconds=mantissa)
    if kind == ValueKind.TIME:
        if flags & Flag.INVALID or not 0 <= mantissa < 86_400:
            return None
        return dt.time(mantissa // 3600, mantissa // 60 % 60, mantissa % 60)
    if kind == ValueKind.BYTES:
        return blob or b""
    if kind in BLOB_KINDS:  # TEXT, and BCD_ERROR's hex digits
        return (blob or b"").decode()
    return None


def _check_mantissa(mantissa: int) -> int:
    if not INT64_MIN <= mantissa <= INT64_MAX:
        raise InvalidReading(f"mantissa {mantissa} does not fit 64 bits")
    return mantissa


def _check_exponent(exponent: int) -> int:
    if not -128 <= exponent <= 127:
        raise InvalidReading(f"decimal exponent {exponent} does not fit 8 bits")
    return exponent


@dataclass(frozen=True, slots=True)
class ValueTable:
    """Values as numpy columns, one row per value; times in seconds since the epoch (UTC).

    ``mantissa`` holds the float64 bit pattern for REAL values; ``meter_time`` is ``NO_TIME``
    where the meter sent no timestamp; ``flags`` are the decoder's record flags; ``blobs`` is
    ``None`` unless there are text, byte or BCD-error values, then it is aligned with the rows.
    """

    series: np.ndarray
    received_at: np.ndarray
    meter_time: np.ndarray
    kind: np.ndarray
    exponent: np.ndarray
    flags: np.ndarray
    mantissa: np.ndarray
    blobs: tuple[bytes | None, ...] | None = None

    COLUMNS = ("series", "received_at", "meter_time", "kind", "exponent", "flags", "mantissa")
    DTYPES = (np.uint32, np.int64, np.int64, np.uint8, np.int8, np.uint8, np.int64)

    @classmethod
    def empty(cls) -> ValueTable:
        return cls(*(np.zeros(0, dtype) for dtype in cls.DTYPES))

    def __len__(self) -> int:
        return len(self.received_at)

    def value(self, i: int) -> object:
        """The exact Python value of row ``i``."""
        blob = self.blobs[i] if self.blobs is not None else None
        return decode_value(
            int(self.kind[i]),
            int(self.mantissa[i]),
            int(self.exponent[i]),
            blob,
            int(self.flags[i]),
        )

    def values(self) -> list[object]:
        return [self.value(i) for i in range(len(self))]

    def select(self, pick: np.ndarray) -> ValueTable:
        """Rows by index array or boolean mask."""
        index = np.flatnonzero(pick) if pick.dtype == bool else pick
        blobs = self.blobs
        return ValueTable(
            *(getattr(self, name)[index] for name in self.COLUMNS),
            None if blobs is None else tuple(blobs[i] for i in index.tolist()),
        )

    def as_float(self) -> np.ndarray:
        """float64 values for graphs and arithmetic (NaN for text, bytes and none)."""
        out = np.full(len(self), np.nan)
        scale = np.power(10.0, self.exponent)
        decimal = self.kind == ValueKind.DECIMAL
        out[decimal] = self.mantissa[decimal] * scale[decimal]
        real = self.kind == ValueKind.REAL
        out[real] = self.mantissa[real].view(np.float64) * scale[real]
        timed = np.isin(self.kind, (ValueKind.DATE, ValueKind.DATETIME, ValueKind.TIME))
        out[timed] = self.mantissa[timed]
        return out


@dataclass(frozen=True, slots=True)
class ReadingValues:
    """A meter's readings in time order (arrival order within a second) and their values.

    ``received_at`` has one entry per reading, those without values too; ``values`` holds the
    values grouped by reading in that order, and ``reading`` the index of each value's reading.
    """

    received_at: np.ndarray
    reading: np.ndarray
    values: ValueTable

    def __len__(self) -> int:
        return len(self.received_at)


@dataclass(frozen=True, slots=True)
class MeterLogEntry:
    received_at: int
    status: ReadingStatus
    duration_ms: int
    retries: int
    error: str
    status_byte: int | None


@dataclass(frozen=True, slots=True)
class MeterLog:
    """A meter's reading log in time order, as columns (``status_byte`` -1: not logged)."""

    received_at: np.ndarray
    status: np.ndarray
    duration_ms: np.ndarray
    retries: np.ndarray
    status_byte: np.ndarray
    errors: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.received_at)

    def __iter__(self) -> Iterator[MeterLogEntry]:
        for i in range(len(self)):
            byte = int(self.status_byte[i])
            yield MeterLogEntry(
                int(self.received_at[i]),
                ReadingStatus(int(self.status[i])),
                int(self.duration_ms[i]),
                int(self.retries[i]),
                self.errors[i],
                None if byte == NO_STATUS_BYTE else byte,
            )
