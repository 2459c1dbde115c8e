"""Whether a wired telegram says "more records follow", without decoding it.

The bus master asks this after every REQ_UD2 answer to know whether to ask for the next
telegram. It walks the record headers (DIF, DIFEs, VIF, VIFEs) and skips each data field by
its length, as ``records.decode`` does, but reads no value and builds no record: the telegram
is decoded once, later, by the reading pipeline. A telegram the walk cannot follow (bad frame,
reserved DIF or LVAR, a record running past the end) gives False, as the decoder's error did.
"""

from libc.stdint cimport uint8_t

from _mbus cimport mbus_sum8

cdef enum:
    LONG_HEADER = 12
    SHORT_HEADER = 4
    MAX_DIFE = 10
    MAX_VIFE = 10


# Data bytes per DIF data field (low nibble), EN 13757-3 table 4; 0x0D (variable length, an LVAR
# byte first) and 0x0F (special functions) are handled apart.
cdef Py_ssize_t FIELD_BYTES[16]
FIELD_BYTES[:] = [0, 1, 2, 3, 4, 4, 6, 8, 0, 1, 2, 3, 4, 0, 6, 0]


cdef Py_ssize_t _lvar_size(uint8_t lvar) noexcept:
    """Data bytes after an LVAR byte; -1 for a reserved LVAR."""
    if lvar <= 0xBF:
        return lvar
    if lvar <= 0xC9 or 0xD0 <= lvar <= 0xD9:
        return lvar & 0x0F
    if 0xE0 <= lvar <= 0xEF:
        return lvar - 0xE0
    if 0xF0 <= lvar <= 0xFA:
        return 4 * (lvar - 0xEC)
    return -1


cdef Py_ssize_t _skip_chain(const uint8_t* p, Py_ssize_t pos, Py_ssize_t end,
                            int limit) noexcept:
    """Past a chain of extension bytes (DIFEs or VIFEs: each with bit 7 set has a next one),
    at most ``limit`` of them; -1 when it runs past the end or the limit."""
    cdef int count = 0
    cdef bint ext = True
    while ext:
        if pos >= end or count == limit:
            return -1
        ext = p[pos] & 0x80
        pos += 1
        count += 1
    return pos


cdef bint _walk(const uint8_t* p, Py_ssize_t pos, Py_ssize_t end) noexcept:
    cdef uint8_t dif, vif, b
    cdef int nvife
    cdef bint ext
    cdef Py_ssize_t n
    while pos < end:
        dif = p[pos]
        pos += 1
        if dif == 0x2F:  # idle filler
            continue
        if dif == 0x1F:
            return True
        if dif == 0x0F:
            return False  # manufacturer data to the end, no more telegrams
        if (dif & 0x0F) == 0x0F:
            if dif != 0x7F:
                return False  # reserved DIF
            continue  # global readout request: no VIF, no data
        if dif & 0x80:
            pos = _skip_chain(p, pos, end, MAX_DIFE)
            if pos < 0:
                return False
        if pos >= end:
            return False
        vif = p[pos]
        pos += 1
        ext = vif & 0x80
        nvife = 0
        if (vif & 0x7F) == 0x7C:  # plain-text VIF: its length and text come first
            if pos >= end:
                return False
            b = p[pos]
            pos += 1 + b
            if pos > end:
                return False
        elif (vif & 0x7F) == 0x7B or (vif & 0x7F) == 0x7D:
            if ext:  # the extension table's VIF is the first VIFE
                if pos >= end:
                    return False
                ext = p[pos] & 0x80
                pos += 1
                nvife = 1
        if ext:
            pos = _skip_chain(p, pos, end, MAX_VIFE - nvife)
            if pos < 0:
                return False
        if (dif & 0x0F) == 0x0D:
            if pos >= end:
                return False
            n = _lvar_size(p[pos])
            pos += 1
            if n < 0:
                return False
        else:
            n = FIELD_BYTES[dif & 0x0F]
        pos += n
        if pos > end:
            return False
    return False


def more_records_follow(bytes frame not None) -> bool:
    """Whether the long frame's records end with DIF 0x1F ("more records follow")."""
    cdef const uint8_t* p = frame
    cdef Py_ssize_t n = len(frame)
    cdef Py_ssize_t start = 7
    cdef int ci
    if (n < 9 or p[0] != 0x68 or p[3] != 0x68 or p[1] != p[2] or p[1] < 3 or n != p[1] + 6
            or p[n - 1] != 0x16 or mbus_sum8(p + 4, p[1]) != p[n - 2]):
        return False
    ci = p[6]
    if ci == 0x72 or ci == 0x76:
        start += LONG_HEADER
    elif ci == 0x7A:
        start += SHORT_HEADER
    elif ci != 0x78 and ci != 0x51:
        return False  # no variable data records
    if start > n - 2:
        return False  # header too short: the decoder fails
    return _walk(p, start, n - 2)
