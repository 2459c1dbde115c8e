"""Integer column transform for compacted time series: delta, zigzag, byte shuffle.

``pack_int64(values, order)`` turns a column of int64 into bytes that a general-purpose
compressor shrinks well; ``unpack_int64(data, out)`` restores it exactly. Bytes in, bytes out.

Layout of a packed column::

    byte 0      order (bits 0-1: 1 = deltas, 2 = deltas of deltas) | width code << 2
    seeds       the first ``order`` inputs of the recurrence (v[0], then v[1] - v[0]),
                zigzag LEB128 varints
    residuals   width bytes per remaining value, zigzag, byte-shuffled: all lowest bytes
                first, then all second bytes, ... (width 0: every residual is zero)

Shuffling groups the bytes that are almost always zero (the high bytes of small deltas), which is
what lets deflate shrink a slowly changing meter series to about one byte per value or less. All
arithmetic wraps modulo 2**64, so any int64 column (including float bit patterns) round-trips.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint64_t

from mbusgw.core.errors import DecodeError

cdef int[5] WIDTHS = [0, 1, 2, 4, 8]


cdef inline uint64_t zigzag(uint64_t d) noexcept nogil:
    return (d << 1) ^ (<uint64_t>0 - (d >> 63))


cdef inline uint64_t unzigzag(uint64_t z) noexcept nogil:
    return (z >> 1) ^ (<uint64_t>0 - (z & 1))


cdef inline Py_ssize_t put_varint(uint8_t* out, uint64_t v) noexcept nogil:
    cdef Py_ssize_t n = 0
    while v >= 0x80:
        out[n] = <uint8_t>((v & 0x7F) | 0x80)
        v >>= 7
        n += 1
    out[n] = <uint8_t>v
    return n + 1


cdef inline int width_code(uint64_t largest) noexcept nogil:
    if largest == 0:
        return 0
    if largest <= 0xFF:
        return 1
    if largest <= 0xFFFF:
        return 2
    if largest <= <uint64_t>0xFFFFFFFF:
        return 3
    return 4


def pack_int64(const int64_t[::1] values not None, int order=1) -> bytes:
    """Pack ``values`` with deltas (``order`` 1) or deltas of deltas (``order`` 2)."""
    if order != 1 and order != 2:
        raise ValueError(f"order must be 1 or 2, not {order}")
    cdef Py_ssize_t n = values.shape[0]
    cdef Py_ssize_t seeds = order if n > order else n
    cdef Py_ssize_t m = n - seeds
    cdef Py_ssize_t i, b
    cdef uint64_t prev = 0, prev_delta = 0, delta, largest = 0
    cdef uint64_t[2] seed
    # first pass: residuals (zigzag) kept in a scratch buffer, and the widest one
    scratch = PyBytes_FromStringAndSize(NULL, m * 8)
    cdef uint64_t* res = <uint64_t*>PyBytes_AS_STRING(scratch)
    with nogil:
        for i in range(n):
            delta = <uint64_t>values[i] - prev
            prev = <uint64_t>values[i]
            if i < seeds:
                seed[i] = delta if i > 0 else prev
            elif order == 1:
                res[i - seeds] = zigzag(delta)
            else:
                res[i - seeds] = zigzag(delta - prev_delta)
            prev_delta = delta
        for i in range(m):
            if res[i] > largest:
                largest = res[i]
    cdef int code = width_code(largest)
    cdef int width = WIDTHS[code]
    out = PyBytes_FromStringAndSize(NULL, 1 + 10 * seeds + m * width)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    cdef Py_ssize_t pos = 1
    p[0] = <uint8_t>(order | (code << 2))
    with nogil:
        for i in range(seeds):
            pos += put_varint(p + pos, zigzag(seed[i]))
        for b in range(width):
            for i in range(m):
                p[pos + b * m + i] = <uint8_t>(res[i] >> (8 * b))
    return out[: pos + m * width]


def unpack_int64(const uint8_t[::1] data not None, int64_t[::1] out not None) -> None:
    """Restore a column packed by ``pack_int64`` into ``out`` (its length is the value count)."""
    cdef Py_ssize_t n = out.shape[0]
    cdef Py_ssize_t size = data.shape[0]
    if size < 1:
        raise DecodeError("empty integer column")
    cdef int order = data[0] & 3
    cdef int code = data[0] >> 2
    if (order != 1 and order != 2) or code > 4:
        raise DecodeError(f"bad integer column header 0x{data[0]:02x}", 0)
    cdef int width = WIDTHS[code]
    cdef Py_ssize_t seeds = order if n > order else n
    cdef Py_ssize_t m = n - seeds
    cdef Py_ssize_t pos = 1, i, b
    cdef uint64_t[2] seed
    cdef uint64_t v, shift
    for i in range(seeds):
        v = 0
        shift = 0
        while True:
            if pos >= size or shift > 63:
                raise DecodeError("integer column seed runs past its end", pos)
            v |= <uint64_t>(data[pos] & 0x7F) << shift
            pos += 1
            if not data[pos - 1] & 0x80:
                break
            shift += 7
        seed[i] = unzigzag(v)
    if size - pos != m * width:
        raise DecodeError(f"integer column holds {size - pos} residual bytes, expected {m * width}", pos)
    cdef uint64_t prev = 0, delta = 0, r
    with nogil:
        for i in range(n):
            if i < seeds:
                if i == 0:
                    prev = seed[0]
                else:
                    delta = seed[1]
                    prev = prev + delta
            else:
                r = 0
                for b in range(width):
                    r |= <uint64_t>data[pos + b * m + (i - seeds)] << (8 * b)
                r = unzigzag(r)
                if order == 1:
                    delta = r
                else:
                    delta = delta + r
                prev = prev + delta
            out[i] = <int64_t>prev
