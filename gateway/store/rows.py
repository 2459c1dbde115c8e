"""Reading rows: how a reading is written as it arrives (the "hot" table), and validated first.

A row is a fixed header, the error text, one 14-byte entry per value and the text/byte values::

    header   <q received_at, q meter_time, I duration_ms, B status, B retries, h status_byte,
              H value count, H error length>
    error    UTF-8
    entries  n × <u4 series, u1 kind, i1 exponent, u1 flags, i8 mantissa>  (REAL: float64 bits)
    blobs    TEXT/BYTES/BCD_ERROR values back to back; their length is their mantissa

Fixed-width entries let numpy read a row without a Python loop per value.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mbusgw.gateway.errors import MAX_ERROR_TEXT, InvalidReading
from mbusgw.gateway.store.keys import SLOT_SECONDS, U32_MAX
from mbusgw.gateway.store.model import (
    INT64_MAX,
    INT64_MIN,
    IS_BLOB,
    KIND_COUNT,
    MAX_NAME,
    NO_TIME,
    ReadingStatus,
    SeriesSpec,
    StoredReading,
    ValueKind,
)

HEADER = struct.Struct("<qqIBBhHH")
ENTRY_DTYPE = np.dtype(
    [("series", "<u4"), ("kind", "u1"), ("exponent", "i1"), ("flags", "u1"), ("mantissa", "<i8")]
)
MAX_VALUES = 0xFFFF
MAX_ERROR = MAX_ERROR_TEXT  # every error text the gateway makes fits
LATEST_TIME = (U32_MAX + 1) * SLOT_SECONDS - 1
_REAL = int(ValueKind.REAL)
_STATUS_CODES = frozenset(int(s) for s in ReadingStatus)


@dataclass(frozen=True, slots=True)
class Row:
    """A decoded reading row (``entries`` is a read-only view of the row bytes)."""

    received_at: int
    meter_time: int
    duration_ms: int
    status: int
    retries: int
    status_byte: int
    error: str
    entries: np.ndarray
    blobs: tuple[bytes | None, ...] | None

    def blob(self, i: int) -> bytes | None:
        return None if self.blobs is None else self.blobs[i]


def accept_readings(
    readings: Sequence[StoredReading],
) -> tuple[list[StoredReading], list[tuple[StoredReading, InvalidReading]]]:
    """The readings the store can take, and those it refuses with the reason: one bad row
    never costs the others their place. The batch is checked at once, and row by row only
    when that fails (the usual batch is all good)."""
    readings = list(readings)
    try:
        validate_readings(readings)
    except InvalidReading:
        pass
    else:
        return readings, []
    good: list[StoredReading] = []
    refused: list[tuple[StoredReading, InvalidReading]] = []
    for reading in readings:
        try:
            validate_readings([reading])
        except InvalidReading as error:
            refused.append((reading, error))
        else:
            good.append(reading)
    return good, refused


def validate_readings(readings: Sequence[StoredReading]) -> None:
    """Raise ``InvalidReading`` unless every field has the type and range the store needs.

    Scalars are checked per reading; the value columns of the whole batch at once.
    """
    kinds, exponents, mantissas, flags = [], [], [], []
    for reading in readings:
        if not isinstance(reading, StoredReading):
            raise InvalidReading(f"not a StoredReading: {type(reading).__name__}")
        _validate_fields(reading)
        if len(reading.series):
            kinds.append(np.asarray(reading.kind))
            exponents.append(np.asarray(reading.exponent))
            mantissas.append(np.asarray(reading.mantissa))
            if reading.flags is not None:
                flags.append(np.asarray(reading.flags))
    if not kinds:
        return
    kind, exponent, mantissa = (np.concatenate(c) for c in (kinds, exponents, mantissas))
    if flags:
        flag = np.concatenate(flags)
        if flag.dtype.kind not in "iu" or flag.min() < 0 or flag.max() > 255:
            raise InvalidReading("record flags must fit 8 bits")
    if kind.dtype.kind not in "iu" or kind.min() < 0 or kind.max() >= KIND_COUNT:
        raise InvalidReading("value kinds must be ValueKind codes")
    if exponent.dtype.kind not in "iu" or exponent.min() < -128 or exponent.max() > 127:
        raise InvalidReading("decimal exponents must fit 8 bits")
    if mantissa.dtype.kind not in "iu" or (
        mantissa.dtype.kind == "u" and mantissa.max() > INT64_MAX
    ):
        raise InvalidReading("mantissas must be 64-bit integers")
    if (kind == _REAL).any() or IS_BLOB[kind].any():
        for reading in readings:
            _validate_special_values(reading)


def _validate_fields(reading: StoredReading) -> None:
    meter = reading.meter
    if not isinstance(meter, str) or not meter or len(meter.encode()) > MAX_NAME:
        raise InvalidReading(f"meter name must be 1..{MAX_NAME} bytes of text, not {meter!r}")
    _check_int("received_at", reading.received_at, 0, LATEST_TIME)
    if reading.meter_time is not None:
        _check_int("meter_time", reading.meter_time, INT64_MIN + 1, INT64_MAX)
    _check_int("duration_ms", reading.duration_ms, 0, U32_MAX)
    _check_int("retries", reading.retries, 0, 255)
    if reading.status_byte is not None:
        _check_int("status_byte", reading.status_byte, 0, 255)
    if not isinstance(reading.status, int) or reading.status not in _STATUS_CODES:
        raise InvalidReading(f"unknown reading status {reading.status!r}")
    if not isinstance(reading.error, str) or len(reading.error.encode()) > MAX_ERROR:
        raise InvalidReading(f"error must be text of at most {MAX_ERROR} bytes")
    if not all(isinstance(frame, bytes | bytearray) for frame in reading.frames):
        raise InvalidReading("frames must be bytes")
    n = len(reading.series)
    if n > MAX_VALUES:
        raise InvalidReading(f"{n} values in one reading; at most {MAX_VALUES}")
    if not all(isinstance(spec, SeriesSpec) for spec in reading.series):
        raise InvalidReading("series must be SeriesSpec objects")
    for name in ("kind", "mantissa", "exponent", "real", "flags", "blobs"):
        column = getattr(reading, name)
        if column is not None and len(column) != n:
            raise InvalidReading(f"{name} has {len(column)} entries for {n} series")


def _validate_special_values(reading: StoredReading) -> None:
    kind = np.asarray(reading.kind)
    if (kind == _REAL).any() and reading.real is None:
        raise InvalidReading("REAL values need the real column")
    blob_rows = np.flatnonzero(IS_BLOB[kind])
    if len(blob_rows) and reading.blobs is None:
        raise InvalidReading("TEXT, BYTES and BCD_ERROR values need the blobs column")
    for i in blob_rows:
        blob = reading.blobs[i]  # type: ignore[index]
        wanted = bytes | bytearray if kind[i] == ValueKind.BYTES else str
        if not isinstance(blob, wanted):
            raise InvalidReading(f"value {i}: {ValueKind(kind[i]).name} needs {wanted}")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidReading(f"{name} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidReading(f"{name} {value} outside {low}..{high}")


def encode_row(reading: StoredReading, series_ids: np.ndarray, status_byte: int) -> bytes:
    """The row of a validated reading whose values belong to ``series_ids``."""
    n = len(series_ids)
    error = reading.error.encode()
    meter_time = NO_TIME if reading.meter_time is None else reading.meter_time
    header = HEADER.pack(
        reading.received_at,
        meter_time,
        reading.duration_ms,
        reading.status,
        reading.retries,
        status_byte,
        n,
        len(error),
    )
    if n == 0:
        return header + error
    entries = np.empty(n, ENTRY_DTYPE)
    entries["series"] = series_ids
    kind = entries["kind"]
    kind[:] = reading.kind
    entries["exponent"] = reading.exponent
    entries["flags"] = 0 if reading.flags is None else reading.flags
    mantissa = entries["mantissa"]
    mantissa[:] = reading.mantissa
    blobs = b""
    if reading.real is not None:
        real = kind == _REAL
        if real.any():
            mantissa[real] = np.asarray(reading.real, np.float64)[real].view(np.int64)
    if reading.blobs is not None:
        parts = []
        for i in np.flatnonzero(IS_BLOB[kind]):
            blob = reading.blobs[i]
            data = blob.encode() if isinstance(blob, str) else bytes(blob)  # type: ignore[union-attr]
            mantissa[i] = len(data)
            parts.append(data)
        blobs = b"".join(parts)
    return b"".join((header, error, entries.tobytes(), blobs))


def decode_row(data: bytes) -> Row:
    """Parse a row; ``ValueError``/``struct.error`` on bytes that are not one."""
    received_at, meter_time, duration, status, retries, status_byte, n, error_len = (
        HEADER.unpack_from(data)
    )
    start = HEADER.size + error_len
    entries = np.frombuffer(data, ENTRY_DTYPE, n, start)
    blob_start = start + n * ENTRY_DTYPE.itemsize
    blobs = None
    if len(data) > blob_start:
        blob_list: list[bytes | None] = [None] * n
        pos = blob_start
        for i in np.flatnonzero(IS_BLOB[entries["kind"]]):
            length = int(entries["mantissa"][i])
            blob_list[i] = data[pos : pos + length]
            pos += length
        if pos != len(data):
            raise ValueError(
                f"row blob area is {len(data) - blob_start} bytes, used {pos - blob_start}"
            )
        blobs = tuple(blob_list)
    return Row(
        received_at,
        meter_time,
        duration,
        status,
        retries,
        status_byte,
        data[HEADER.size : start].decode(),
        entries,
        blobs,
    )
