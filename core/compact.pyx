"""Compact frames (EN 13757-3 annex G, OMS): record layouts and format signatures, sans-I/O.

A meter that sends compact frames (CI 0x79/0x7B/0x73) leaves out every DIF/VIF: the frame holds
a format signature, the CRC of the full frame it stands for, and the data bytes. The layout, that
is the record headers and their data sizes, is learnt from a full frame (CI 0x78/0x7A/0x72) or a
format frame (CI 0x69/0x6A/0x6B) of the same meter. The format signature is the CRC-16 of all
record header bytes (DIF, DIFEs, VIF, VIFEs) in order; the full-frame CRC is the CRC-16 of the
rebuilt records, so a rebuilt frame is verified before it is decoded.

``scan_records`` walks the record structure only (headers and data lengths), which is all a layout
needs; the values are decoded later from the rebuilt full frame.
"""

from cpython.bytes cimport PyBytes_AS_STRING
from libc.stdint cimport uint8_t

from _mbus cimport mbus_crc16, mbus_lvar_size

import json

from mbusgw.core.errors import ChecksumError, DecodeError, UnsupportedError

cdef enum:
    FILL = 0x2F
    MAX_EXTENSIONS = 10  # DIFEs after a DIF, VIFEs after a VIF

# Data bytes by the low nibble of the DIF (-1: variable length, -2: special function).
cdef int[16] DATA_SIZE = [0, 1, 2, 3, 4, 4, 6, 8, 0, 1, 2, 3, 4, -1, 6, -2]


cdef Py_ssize_t _lvar_size(int lvar, Py_ssize_t offset) except -1:
    """Bytes that follow a variable-length (DIF 0x?D) LVAR byte."""
    cdef int size = mbus_lvar_size(<uint8_t>lvar)
    if size < 0:
        raise DecodeError(f"LVAR 0x{lvar:02X} is reserved", offset)
    return size


cdef class RecordShape:
    """One record's header bytes (DIF … VIFE, plain-text unit included) and data size; a
    variable-length record keeps its LVAR byte in the data."""
    cdef readonly bytes header
    cdef readonly Py_ssize_t offset, data_size

    def __repr__(self):
        return (f"RecordShape(header={self.header.hex().upper()!r}, offset={self.offset}, "
                f"data_size={self.data_size})")


def scan_records(apl) -> tuple:
    """``(shapes, manufacturer_tail)``: the records of an application layer, and the offset of
    manufacturer-specific data (DIF 0x0F/0x1F) or None. Fill bytes 0x2F are skipped."""
    shapes, tail, _ = _scan(apl, False)
    return shapes, tail


def whole_records_length(apl) -> int:
    """The length of the longest prefix of ``apl`` that holds only complete records (for a
    payload whose last encrypted block was lost)."""
    _, tail, end = _scan(apl, True)
    return end if tail is None else len(apl)


cdef tuple _scan(apl, bint partial):
    """Walk the records; with ``partial`` stop before the first incomplete one instead of
    raising. Returns ``(shapes, manufacturer_tail, end_of_last_whole_record)``."""
    cdef const uint8_t[:] view = apl
    cdef Py_ssize_t n = view.shape[0], pos = 0, start = 0
    shapes = []
    while pos < n:
        if view[pos] == FILL:
            pos += 1
            continue
        if view[pos] == 0x0F or view[pos] == 0x1F:
            return shapes, pos, pos
        start = pos
        try:
            shape = _scan_one(view, pos)
        except DecodeError:
            if partial:
                return shapes, None, start
            raise
        shapes.append(shape)
        pos = (<RecordShape>shape).offset + len((<RecordShape>shape).header) \
            + (<RecordShape>shape).data_size
    return shapes, None, pos


cdef Py_ssize_t _after_extensions(const uint8_t[:] view, Py_ssize_t pos, int first,
                                  str what) except -1:
    """Skip the extension bytes (DIFEs or VIFEs) that follow a byte with bit 7 set."""
    cdef Py_ssize_t count = 0
    cdef int b = first
    while b & 0x80:
        if pos >= view.shape[0]:
            raise DecodeError(f"record header ends inside its {what}s", pos)
        b = view[pos]
        pos += 1
        count += 1
        if count > MAX_EXTENSIONS:
            raise DecodeError(f"more than {MAX_EXTENSIONS} {what}s", pos)
    return pos


cdef RecordShape _scan_one(const uint8_t[:] view, Py_ssize_t pos):
    cdef Py_ssize_t n = view.shape[0], start = pos, size
    cdef int dif = view[pos], vif
    if (dif & 0x0F) == 0x0F:
        raise DecodeError(f"special DIF 0x{dif:02X} inside the records", pos)
    pos = _after_extensions(view, pos + 1, dif, "DIFE")
    if pos >= n:
        raise DecodeError("record without a VIF", pos)
    vif = view[pos]
    pos = _after_extensions(view, pos + 1, vif, "VIFE")
    if (vif & 0x7F) == 0x7C:
        if pos >= n:
            raise DecodeError("plain-text VIF without its length", pos)
        pos += 1 + view[pos]
        if pos > n:
            raise DecodeError("plain-text VIF longer than the telegram", n)
    size = DATA_SIZE[dif & 0x0F]
    if size == -1:
        if pos >= n:
            raise DecodeError("variable-length record without its LVAR byte", pos)
        size = 1 + _lvar_size(view[pos], pos)
    if pos + size > n:
        raise DecodeError(f"record data ({size} bytes) runs past the end", pos)
    cdef RecordShape shape = RecordShape.__new__(RecordShape)
    shape.header = bytes(view[start:pos])
    shape.offset = start
    shape.data_size = size
    return shape


def crc16(data) -> int:
    cdef const uint8_t[:] view = data
    if view.shape[0] == 0:
        return 0xFFFF
    return mbus_crc16(&view[0], <size_t>view.shape[0])


cdef class CompactLayout:
    """The record layout of a meter's full frame, keyed by its format signature."""
    cdef readonly tuple headers, sizes
    cdef readonly int signature
    cdef readonly bint has_variable

    def __init__(self, headers, sizes):
        self.headers = tuple(bytes(h) for h in headers)
        self.sizes = tuple(int(s) for s in sizes)
        if len(self.headers) != len(self.sizes):
            raise ValueError("one data size per record header")
        self.signature = crc16(b"".join(self.headers))
        self.has_variable = any((h[0] & 0x0F) == 0x0D for h in self.headers)

    @staticmethod
    def from_full_frame(apl) -> CompactLayout:
        """The layout of a full frame's records (its manufacturer-specific tail is not part of a
        compact layout)."""
        shapes, _ = scan_records(apl)
        return CompactLayout([s.header for s in shapes], [s.data_size for s in shapes])

    @staticmethod
    def from_headers(headers_bytes) -> CompactLayout:
        """A layout from the record headers one after the other (as a format frame carries
        them, or as a manufacturer documents a meter's compact frame)."""
        headers, sizes = _split_headers(bytes(headers_bytes))
        return CompactLayout(headers, sizes)

    @staticmethod
    def from_format_frame(payload) -> CompactLayout:
        """A format frame (CI 0x69/0x6A/0x6B) payload: length, signature, record headers."""
        data = bytes(payload)
        if len(data) < 3 or data[0] + 1 > len(data) or data[0] < 2:
            raise DecodeError("format frame shorter than its length byte says", 0)
        signature = data[1] | (data[2] << 8)
        headers_bytes = data[3:data[0] + 1]
        headers, sizes = _split_headers(headers_bytes)
        layout = CompactLayout(headers, sizes)
        if layout.signature != signature:
            raise ChecksumError(f"format frame signature 0x{signature:04X} does not match its "
                                f"headers (0x{layout.signature:04X})", 1, layout.signature,
                                signature)
        return layout

    def expand(self, data) -> bytes:
        """Rebuild the full records from a compact frame's data bytes."""
        cdef bytes raw = bytes(data)
        cdef Py_ssize_t pos = 0, size
        out = bytearray()
        for header, size in zip(self.headers, self.sizes):
            if (header[0] & 0x0F) == 0x0D:
                if pos >= len(raw):
                    raise DecodeError("compact data ends before a variable-length record", pos)
                size = 1 + _lvar_size(raw[pos], pos)
            if pos + size > len(raw):
                raise DecodeError(f"compact data ends inside record {header.hex().upper()}",
                                  len(raw))
            out += header
            out += raw[pos:pos + size]
            pos += size
        if pos != len(raw):
            out += raw[pos:]
        return bytes(out)

    def __eq__(self, other):
        if type(other) is not CompactLayout:
            return NotImplemented
        return (self.headers, self.sizes) == ((<CompactLayout>other).headers,
                                              (<CompactLayout>other).sizes)

    def __hash__(self):
        return hash((CompactLayout, self.headers, self.sizes))

    def __repr__(self):
        return f"CompactLayout(signature=0x{self.signature:04X}, records={len(self.headers)})"


cdef tuple _split_headers(bytes headers_bytes):
    """Split the header bytes of a format frame into headers and data sizes (variable-length
    records get size 0 here: their LVAR byte is in the compact data)."""
    cdef const uint8_t[:] view = headers_bytes
    cdef Py_ssize_t pos = 0, n = len(headers_bytes), start
    cdef int dif
    headers = []
    sizes = []
    while pos < n:
        start = pos
        dif = view[pos]
        if (dif & 0x0F) == 0x0F:
            raise UnsupportedError(f"DIF 0x{dif:02X} in a format frame", pos)
        pos = _after_extensions(view, pos + 1, dif, "DIFE")
        if pos >= n:
            raise DecodeError("format frame ends inside a record header", pos)
        pos = _after_extensions(view, pos + 1, view[pos], "VIFE")
        headers.append(headers_bytes[start:pos])
        size = DATA_SIZE[dif & 0x0F]
        sizes.append(0 if size < 0 else size)
    return headers, sizes


def layouts_from_json(str text) -> dict:
    """Known compact layouts (the JSON of ``compact_layouts.json``, see docs/core.md):
    ``{manufacturer: {signature: CompactLayout}}``. Each entry's signature is checked against its
    record headers, so a damaged file fails here rather than rebuilding wrong frames."""
    try:
        entries = json.loads(text)["layouts"]
        known = {}
        for entry in entries:
            layout = CompactLayout([bytes.fromhex(h) for h in entry["headers"]], entry["sizes"])
            signature = int(entry["signature"], 16)
            if layout.signature != signature:
                raise ValueError(f"{entry['manufacturer']} layout 0x{signature:04X}: its headers "
                                 f"give 0x{layout.signature:04X}")
            known.setdefault(str(entry["manufacturer"]), {})[signature] = layout
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a compact layout file: {error!r}") from None
    return known


def split_compact(payload) -> tuple:
    """A compact frame payload: ``(signature, full_frame_crc, data)`` (leading 0x2F fill bytes,
    the decryption check of an encrypted frame, are skipped)."""
    cdef bytes raw = bytes(payload)
    cdef Py_ssize_t pos = 0
    while pos < len(raw) and raw[pos] == FILL:
        pos += 1
    if len(raw) - pos < 4:
        raise DecodeError("compact frame without its format signature and CRC", pos)
    return (raw[pos] | (raw[pos + 1] << 8), raw[pos + 2] | (raw[pos + 3] << 8),
            raw[pos + 4:])


def rebuild_full_frame(CompactLayout layout not None, payload) -> bytes:
    """Rebuild and verify the full records of a compact frame with a known layout."""
    signature, full_crc, data = split_compact(payload)
    if signature != layout.signature:
        raise DecodeError(f"compact frame signature 0x{signature:04X} is not the layout's "
                          f"0x{layout.signature:04X}", 0)
    records = layout.expand(data)
    actual = crc16(records)
    if actual != full_crc:
        raise ChecksumError(f"rebuilt full frame CRC 0x{actual:04X}, the compact frame says "
                            f"0x{full_crc:04X}", 2, full_crc, actual)
    return records
