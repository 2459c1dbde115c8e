"""From decoded telegrams (``mbusgw.core.records``) to store readings.

The columns come straight from ``telegram.array``: kind, exponent, flags, mantissa and real,
without a Python object per record. A record's identity is its DIF..VIFE bytes in the payload;
its quantity, unit and description are worked out once per identity (``SeriesNames``) from the
decoder's ``Record`` view and then reused, so a reading cycle does no per-record string work.
Text, bytes and BCD digits with errors take the decoder's Python value.

Manufacturer data (DIF 0x0F/0x1F) is not a measured value: it stays in the raw telegram, which
the store keeps with the reading, and is not made a series unless asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mbusgw.core.records import Telegram
from mbusgw.core.units import Flag, Function, Quantity, ValueKind
from mbusgw.gateway.store.model import (
    IS_BLOB,
    HeaderIdentity,
    ReadingStatus,
    SeriesSpec,
    StoredReading,
)

_MANUFACTURER = (Function.MANUFACTURER_SPECIFIC, Function.MORE_RECORDS_FOLLOW)


def value_flags(array: np.ndarray) -> np.ndarray:
    """The flags of decoded records (``Telegram.array``) as every consumer reports them: a
    record that carries an error VIFE (EN 13757-3 table 17) has no valid value, so it is flagged
    invalid like a value the meter flagged itself. The store keeps these flags; the API, the
    live snapshot's JSON and Modbus all read them, so they agree on which values are invalid."""
    errors = array["record_error"] != 0
    return (array["flags"] | np.where(errors, np.uint8(Flag.INVALID), np.uint8(0))).astype(np.uint8)


class SeriesNames:
    """``SeriesSpec`` per record identity, built on first sight (keep one per gateway)."""

    def __init__(self) -> None:
        self._specs: dict[bytes, SeriesSpec] = {}

    def spec(self, telegram: Telegram, index: int, signature: bytes) -> SeriesSpec:
        spec = self._specs.get(signature)
        if spec is None:
            record = telegram.record(index)
            spec = SeriesSpec(signature, record.quantity, record.unit, describe(record))
            self._specs[signature] = spec
        return spec


def describe(record: object) -> str:
    """What sets a record apart from others of its quantity: function, storage, tariff ..."""
    parts = []
    if record.function != Function.INSTANTANEOUS.name.lower():  # type: ignore[attr-defined]
        parts.append(record.function.replace("_", " "))  # type: ignore[attr-defined]
    for name in ("storage", "tariff", "subunit"):
        number = getattr(record, name)
        if number:
            parts.append(f"{name} {number}")
    parts += [modifier.replace("_", " ") for modifier in record.modifiers]  # type: ignore[attr-defined]
    return ", ".join(parts)


def reading_from_telegrams(
    meter: str,
    telegrams: Sequence[Telegram],
    received_at: int,
    *,
    names: SeriesNames,
    frames: Sequence[bytes] = (),
    duration_ms: int = 0,
    retries: int = 0,
    keep_manufacturer_data: bool = False,
) -> StoredReading:
    """One reading of a meter from its telegrams (more than one with multi-telegram reads).

    The meter's own time is the first instantaneous, current (storage 0) date-time record;
    the status byte comes from the first telegram's header. A CI 0x70 telegram (application
    error) makes the reading ``OTHER_ERROR`` with the meter's error text.
    """
    specs: list[SeriesSpec] = []
    columns: dict[str, list[np.ndarray]] = {
        n: [] for n in ("kind", "exponent", "flags", "mantissa", "real")
    }
    blobs: list[bytes | str | None] = []
    meter_time = None
    error = ""
    for telegram in telegrams:
        if telegram.error is not None:
            error = f"application error {telegram.error.code}: {telegram.error.text}"
        array = telegram.array
        if not len(array):
            continue
        keep = np.ones(len(array), bool)
        if not keep_manufacturer_data:
            keep &= ~np.isin(array["function"], _MANUFACTURER)
        payload = telegram.payload
        rows = np.flatnonzero(keep)
        offsets = array["difvif_offset"][rows].tolist()
        lengths = array["difvif_length"][rows].tolist()
        for i, start, length in zip(rows.tolist(), offsets, lengths, strict=True):
            specs.append(names.spec(telegram, i, payload[start : start + length]))
        picked = array[rows]
        for name in columns:
            columns[name].append(value_flags(picked) if name == "flags" else picked[name])
        is_blob = IS_BLOB[picked["kind"]]
        if is_blob.any():  # each record alone: the telegram keeps no list of them all
            blobs += [
                telegram.record(i).value if blob else None
                for i, blob in zip(rows.tolist(), is_blob.tolist(), strict=True)
            ]
        else:
            blobs += [None] * len(rows)
        if meter_time is None:
            meter_time = _meter_time(picked)
    joined = {
        name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()
    }
    header = telegrams[0].header if telegrams else None
    return StoredReading(
        meter,
        received_at,
        specs,
        joined["kind"].astype(np.uint8),
        joined["mantissa"].astype(np.int64),
        joined["exponent"].astype(np.int8),
        real=joined["real"].astype(np.float64),
        blobs=blobs if any(b is not None for b in blobs) else None,
        flags=joined["flags"].astype(np.uint8),
        meter_time=meter_time,
        frames=tuple(frames),
        status=ReadingStatus.OTHER_ERROR if error else ReadingStatus.OK,
        duration_ms=duration_ms,
        retries=retries,
        error=error,
        status_byte=None if header is None else header.status,
        header=None if header is None else HeaderIdentity.of(header),
    )


def _meter_time(array: np.ndarray) -> int | None:
    current = (
        (array["kind"] == ValueKind.DATETIME)
        & (array["quantity"] == Quantity.TIME_POINT)
        & (array["storage"] == 0)
        & (array["function"] == Function.INSTANTANEOUS)
        & ((array["flags"] & Flag.INVALID) == 0)
    )
    hits = np.flatnonzero(current)
    return int(array["mantissa"][hits[0]]) if len(hits) else None
