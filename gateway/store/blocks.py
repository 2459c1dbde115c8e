"""Compacted blocks: one meter's readings of one UTC day, column by column.

A block holds the meter log columns (reception time, meter time, status, duration, retries,
status byte, error) once, and one section per series with the rows it has values in and its
kind, exponent, flags, mantissa and text/byte columns. Sharing the time columns across a meter's
series is what keeps the store near one byte per value. Integer columns go through
``mbusgw.core.column`` (delta or delta-of-delta, zigzag, byte shuffle) and then raw deflate when
that is smaller.

Layout (little-endian)::

    u8        format version (1)
    u4        CRC-32 of everything after it (flash cards do flip bits)
    varint    reading count n
    varint    series count k
    k × u4    series ids, ascending
    (k+1)×u4  end offset of each section in the payload (section 0: the meter log)
    payload   sections; a section is a run of fields, a field is ``varint length, tag, data``

A single series is read by decoding the first three fields of section 0 and its own section
only. ``MeterColumns`` is the decoded form, also used to merge a block with late rows.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from mbusgw.core.column import pack_int64, unpack_int64
from mbusgw.core.errors import DecodeError
from mbusgw.gateway.errors import StoreCorrupt
from mbusgw.gateway.store.model import IS_BLOB, NO_TIME
from mbusgw.gateway.store.rows import Row

VERSION = 1
_U32 = struct.Struct("<I")
# field tags: bit 0 = deflated
_INT, _INT_Z, _BYTES, _BYTES_Z, _BITS, _BITS_Z, _ALL, _NONE = range(8)
_DEFLATE_FROM = 24  # shorter payloads do not shrink enough to pay for an inflate call


@dataclass(slots=True)
class SeriesColumn:
    """A series' values in a span: ``rows`` are indexes into the meter's reading columns."""

    rows: np.ndarray
    kind: np.ndarray
    exponent: np.ndarray
    flags: np.ndarray
    mantissa: np.ndarray
    blobs: list[bytes | None] | None = None

    VALUE_COLUMNS = ("kind", "exponent", "flags", "mantissa")


@dataclass(slots=True)
class MeterColumns:
    """All readings of one meter in a span, in time order, as columns."""

    received_at: np.ndarray
    meter_time: np.ndarray
    status: np.ndarray
    retries: np.ndarray
    duration_ms: np.ndarray
    status_byte: np.ndarray
    errors: list[str]
    series: dict[int, SeriesColumn] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.received_at)

    def value_count(self) -> int:
        return sum(len(column.rows) for column in self.series.values())


# -- building columns ------------------------------------------------------------------------


def columns_from_rows(rows: list[Row]) -> MeterColumns:
    """Columns of reading rows (any order; sorted by reception time, stable)."""
    order = sorted(range(len(rows)), key=lambda i: rows[i].received_at)
    rows = [rows[i] for i in order]
    n = len(rows)
    columns = MeterColumns(
        np.array([r.received_at for r in rows], np.int64),
        np.array([r.meter_time for r in rows], np.int64),
        np.array([r.status for r in rows], np.int64),
        np.array([r.retries for r in rows], np.int64),
        np.array([r.duration_ms for r in rows], np.int64),
        np.array([r.status_byte for r in rows], np.int64),
        [r.error for r in rows],
    )
    counts = np.array([len(r.entries) for r in rows], np.int64)
    if not counts.sum():
        return columns
    entries = np.concatenate([r.entries for r in rows])
    row_index = np.repeat(np.arange(n, dtype=np.int64), counts)
    blobs: list[bytes | None] | None = None
    if any(r.blobs is not None for r in rows):
        blobs = []
        for r, count in zip(rows, counts.tolist(), strict=True):
            blobs.extend(r.blobs if r.blobs is not None else [None] * count)
    _group_series(columns, entries["series"], row_index, entries, blobs)
    return columns


def _group_series(
    columns: MeterColumns,
    series: np.ndarray,
    row_index: np.ndarray,
    values: np.ndarray | dict[str, np.ndarray],
    blobs: list[bytes | None] | None,
) -> None:
    by_series = np.argsort(series, kind="stable")
    ids, starts = np.unique(series[by_series], return_index=True)
    bounds = [*starts.tolist(), len(by_series)]
    for j, series_id in enumerate(ids.tolist()):
        pick = by_series[bounds[j] : bounds[j + 1]]
        kind = np.asarray(values["kind"][pick], np.int64)
        column_blobs = None
        if blobs is not None and IS_BLOB[kind].any():
            column_blobs = [blobs[i] for i in pick.tolist()]
        columns.series[series_id] = SeriesColumn(
            row_index[pick],
            kind,
            np.asarray(values["exponent"][pick], np.int64),
            np.asarray(values["flags"][pick], np.int64),
            np.asarray(values["mantissa"][pick], np.int64),
            column_blobs,
        )


def merge_columns(first: MeterColumns, second: MeterColumns) -> MeterColumns:
    """One span from two (a stored block and late rows), sorted by reception time, stable."""
    received = np.concatenate([first.received_at, second.received_at])
    order = np.argsort(received, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    merged = MeterColumns(
        received[order],
        *(
            np.concatenate([getattr(first, name), getattr(second, name)])[order]
            for name in ("meter_time", "status", "retries", "duration_ms", "status_byte")
        ),
        [(first.errors + second.errors)[i] for i in order.tolist()],
    )
    parts: dict[str, list[np.ndarray]] = {
        name: [] for name in ("series", "row", *SeriesColumn.VALUE_COLUMNS)
    }
    blobs: list[bytes | None] = []
    any_blobs = False
    for offset, columns in ((0, first), (len(first), second)):
        for series_id, column in columns.series.items():
            parts["series"].append(np.full(len(column.rows), series_id, np.int64))
            parts["row"].append(position[column.rows + offset])
            for name in SeriesColumn.VALUE_COLUMNS:
                parts[name].append(getattr(column, name))
            any_blobs |= column.blobs is not None
            blobs.extend(column.blobs if column.blobs is not None else [None] * len(column.rows))
    if parts["series"]:
        flat = {name: np.concatenate(arrays) for name, arrays in parts.items()}
        # within a series, keep time order: sort its entries by their new row
        by_row = np.argsort(flat["row"], kind="stable")
        flat = {name: array[by_row] for name, array in flat.items()}
        flat_blobs = [blobs[i] for i in by_row.tolist()] if any_blobs else None
        _group_series(merged, flat["series"], flat["row"], flat, flat_blobs)
    return merged


# -- encoding --------------------------------------------------------------------------------


def encode_block(columns: MeterColumns) -> bytes:
    n = len(columns)
    present = columns.meter_time != NO_TIME
    meter_section = b"".join(
        (
            _int_field(columns.received_at),
            _bits_field(present),
            _int_field(columns.meter_time[present] - columns.received_at[present]),
            _int_field(columns.status),
            _int_field(columns.retries),
            _int_field(columns.duration_ms),
            _int_field(columns.status_byte),
            *_text_fields(columns.errors),
        )
    )
    sections = [meter_section]
    ids = sorted(columns.series)
    for series_id in ids:
        column = columns.series[series_id]
        mask = np.zeros(n, bool)
        mask[column.rows] = True
        blob_data = b""
        if column.blobs is not None:
            blob_data = b"".join(b for b in column.blobs if b is not None)
        sections.append(
            b"".join(
                (
                    _bits_field(mask),
                    _int_field(_pack_meta(column)),
                    _int_field(column.mantissa),
                    _bytes_field(blob_data),
                )
            )
        )
    ends = np.cumsum([len(s) for s in sections]).astype("<u4")
    body = b"".join(
        (_varint(n), _varint(len(ids)), np.array(ids, "<u4").tobytes(), ends.tobytes(), *sections)
    )
    return bytes([VERSION]) + _U32.pack(zlib.crc32(body)) + body


def _pack_meta(column: SeriesColumn) -> np.ndarray:
    """Kind, exponent and flags in one column (almost always constant: one field, not three)."""
    return column.kind | (column.exponent & 0xFF) << 8 | column.flags << 16


def _framed(tag: int, data: bytes) -> bytes:
    return _varint(len(data) + 1) + bytes([tag]) + data


def _smaller(tag: int, data: bytes) -> tuple[int, bytes]:
    if len(data) >= _DEFLATE_FROM:
        packed = zlib.compress(data, 9, -15)
        if len(packed) < len(data):
            return tag + 1, packed
    return tag, data


def _int_field(values: np.ndarray) -> bytes:
    values = np.ascontiguousarray(values, np.int64)
    best: tuple[int, bytes] | None = None
    for order in (1, 2):
        candidate = _smaller(_INT, pack_int64(values, order))
        if best is None or len(candidate[1]) < len(best[1]):
            best = candidate
    return _framed(*best)  # type: ignore[misc]


def _bytes_field(data: bytes) -> bytes:
    return _framed(*_smaller(_BYTES, data))


def _bits_field(mask: np.ndarray) -> bytes:
    if mask.all():
        return _framed(_ALL, b"")
    if not mask.any():
        return _framed(_NONE, b"")
    return _framed(*_smaller(_BITS, np.packbits(mask).tobytes()))


def _text_fields(texts: list[str]) -> tuple[bytes, bytes]:
    encoded = [t.encode() for t in texts]
    return _int_field(np.array([len(e) for e in encoded], np.int64)), _bytes_field(
        b"".join(encoded)
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# -- decoding --------------------------------------------------------------------------------


class _Reader:
    """A cursor over a block's bytes; every overrun is a ``StoreCorrupt``."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def varint(self) -> int:
        value = shift = 0
        data = self.data
        while True:
            if self.pos >= self.end or shift > 63:
                raise StoreCorrupt("block varint runs past its end")
            byte = data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def field(self) -> tuple[int, bytes]:
        pos = self.pos
        if pos < self.end and self.data[pos] < 0x80:  # the usual one-byte length, inline
            length = self.data[pos]
            self.pos = pos + 1
        else:
            length = self.varint()
        end = self.pos + length
        if length < 1 or end > self.end:
            raise StoreCorrupt("block field runs past its section")
        tag = self.data[self.pos]
        body = self.data[self.pos + 1 : end]
        self.pos = end
        return tag, body

    def ints(self, count: int) -> np.ndarray:
        tag, body = self.field()
        out = np.empty(count, np.int64)
        try:
            if tag == _INT:
                unpack_int64(body, out)
            elif tag == _INT_Z:
                unpack_int64(zlib.decompress(body, -15), out)
            else:
                raise StoreCorrupt(f"expected an integer field, found tag {tag}")
        except (zlib.error, DecodeError) as error:
            raise StoreCorrupt(f"bad integer field: {error}") from error
        return out

    def bits(self, count: int) -> np.ndarray | None:
        """A presence mask, or ``None`` when every row is present."""
        tag, body = self.field()
        if tag == _ALL:
            return None
        if tag == _NONE:
            return np.zeros(count, bool)
        if tag not in (_BITS, _BITS_Z):
            raise StoreCorrupt(f"expected a bitmap field, found tag {tag}")
        data = self.inflate(tag, body)
        if len(data) != (count + 7) // 8:
            raise StoreCorrupt("bitmap of the wrong length")
        return np.unpackbits(np.frombuffer(data, np.uint8), count=count).astype(bool)

    def raw(self) -> bytes:
        tag, body = self.field()
        if tag not in (_BYTES, _BYTES_Z):
            raise StoreCorrupt(f"expected a bytes field, found tag {tag}")
        return self.inflate(tag, body)

    @staticmethod
    def inflate(tag: int, body: bytes) -> bytes:
        if not tag & 1:
            return body
        try:
            return zlib.decompress(body, -15)
        except zlib.error as error:
            raise StoreCorrupt(f"bad deflate stream: {error}") from error


@dataclass(frozen=True, slots=True)
class _Header:
    n: int
    ids: tuple[int, ...]
    starts: tuple[int, ...]  # absolute offset of each section, plus the end


def _header(data: bytes) -> _Header:
    if not data or data[0] != VERSION:
        raise StoreCorrupt(f"unknown block format {data[:1].hex() or 'empty'}")
    if len(data) < 5 or _U32.unpack_from(data, 1)[0] != zlib.crc32(memoryview(data)[5:]):
        raise StoreCorrupt("block checksum mismatch")
    reader = _Reader(data, 5, len(data))
    n = reader.varint()
    k = reader.varint()
    base = reader.pos + 8 * k + 4
    if base > len(data):
        raise StoreCorrupt("block header runs past its end")
    table = struct.unpack_from(f"<{2 * k + 1}I", data, reader.pos)
    if table[-1] != len(data) - base:
        raise StoreCorrupt("block section table does not match its length")
    return _Header(n, table[:k], (base, *[base + e for e in table[k:]]))


def _section_bounds(header: _Header, index: int) -> tuple[int, int]:
    start, end = header.starts[index], header.starts[index + 1]
    if not header.starts[0] <= start <= end:
        raise StoreCorrupt("block section table is out of order")
    return start, end


def _times(reader: _Reader, n: int) -> tuple[np.ndarray, np.ndarray]:
    received = reader.ints(n)
    present = reader.bits(n)
    if present is None:
        return received, reader.ints(n) + received
    meter_time = np.full(n, NO_TIME, np.int64)
    meter_time[present] = reader.ints(int(present.sum())) + received[present]
    return received, meter_time


@dataclass(slots=True)
class PackedColumn:
    """A series column as stored: kind, exponent and flags still packed in ``meta``."""

    rows: np.ndarray
    meta: np.ndarray
    mantissa: np.ndarray
    blobs: list[bytes | None] | None


def unpack_meta(meta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(kind, exponent, flags)`` from the packed column (one pass, for many blocks at once)."""
    return meta & 0xFF, (meta >> 8 & 0xFF).astype(np.int8).astype(np.int64), meta >> 16


def _packed_section(data: bytes, header: _Header, index: int, n: int) -> PackedColumn:
    reader = _Reader(data, *_section_bounds(header, index + 1))
    present = reader.bits(n)
    rows = np.arange(n) if present is None else np.flatnonzero(present)
    k = len(rows)
    meta = reader.ints(k)
    mantissa = reader.ints(k)
    blob_data = reader.raw()
    if reader.pos != reader.end:
        raise StoreCorrupt("block section has trailing bytes")
    blobs = None
    if blob_data:  # empty text and bytes need no blob: they decode from a zero length
        is_blob = IS_BLOB[meta & 0xFF]
        blobs = [None] * k
        pos = 0
        for i in np.flatnonzero(is_blob).tolist():
            length = int(mantissa[i])
            blobs[i] = blob_data[pos : pos + length]
            pos += length
        if pos != len(blob_data):
            raise StoreCorrupt("block text/bytes area does not match the lengths")
    return PackedColumn(rows, meta, mantissa, blobs)


def _section(data: bytes, header: _Header, index: int, n: int) -> SeriesColumn:
    packed = _packed_section(data, header, index, n)
    return SeriesColumn(packed.rows, *unpack_meta(packed.meta), packed.mantissa, packed.blobs)


def decode_block_log(data: bytes) -> MeterColumns:
    """The meter log columns of a block (no series)."""
    header = _header(data)
    n = header.n
    reader = _Reader(data, *_section_bounds(header, 0))
    received, meter_time = _times(reader, n)
    status, retries, duration, status_byte = (reader.ints(n) for _ in range(4))
    lengths = reader.ints(n)
    text = reader.raw()
    if lengths.min(initial=0) < 0 or int(lengths.sum()) != len(text) or reader.pos != reader.end:
        raise StoreCorrupt("block error texts do not match their lengths")
    bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    try:
        errors = [text[a:b].decode() for a, b in zip(bounds, bounds[1:], strict=False)]
    except UnicodeDecodeError as error:
        raise StoreCorrupt(f"block error text is not UTF-8: {error}") from error
    return MeterColumns(received, meter_time, status, retries, duration, status_byte, errors)


def decode_block(data: bytes) -> MeterColumns:
    """Every column of a block."""
    header = _header(data)
    columns = decode_block_log(data)
    for index, series_id in enumerate(header.ids):
        columns.series[series_id] = _section(data, header, index, header.n)
    return columns


def block_value_count(data: bytes) -> tuple[int, int]:
    """``(readings, values)`` in a block, from the presence maps only."""
    header = _header(data)
    values = 0
    for index in range(len(header.ids)):
        present = _Reader(data, *_section_bounds(header, index + 1)).bits(header.n)
        values += header.n if present is None else int(present.sum())
    return header.n, values


def decode_block_series(
    data: bytes, series_id: int
) -> tuple[np.ndarray, np.ndarray, PackedColumn] | None:
    """``(received_at, meter_time, column)`` of one series, or ``None`` if it has no values.

    The column keeps kind, exponent and flags packed: a caller reading many blocks unpacks
    them once for all (``unpack_meta``).
    """
    header = _header(data)
    try:
        index = header.ids.index(series_id)
    except ValueError:
        return None
    reader = _Reader(data, *_section_bounds(header, 0))
    received, meter_time = _times(reader, header.n)
    column = _packed_section(data, header, index, header.n)
    if len(column.rows) == header.n:
        return received, meter_time, column
    return received[column.rows], meter_time[column.rows], column


def block_times(data: bytes) -> np.ndarray:
    """The reception times of a block's readings."""
    header = _header(data)
    return _Reader(data, *_section_bounds(header, 0)).ints(header.n)
