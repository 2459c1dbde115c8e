"""EN 13757-3 application layer: headers, DIF/DIFE/VIF/VIFE records, every data type.

The decode loop is C: a bounds-checked cursor walks the bytes (every read is preceded by a
length check; the debug build, MBUSGW_DEBUG=1, also asserts that the cursor stayed inside) and
fills ``RecordC`` structs in a scratch buffer, which is copied once into the telegram (no Python
object per record). The record array (numpy, ``RECORD_DTYPE``) and the ``Record`` objects are
built only when asked for.

Values stay exact: integers and BCD as ``mantissa * 10**exponent`` already scaled to the base
unit of the VIF table (Wh, J, m³, kg, W, ...); non-decimal factors such as minutes to seconds go
into the mantissa. Only real32 data is a float. The VIF tables are C arrays generated from
``core/vif_table.csv`` (``_vif_table.h``); codes and names are the enums of ``units.py``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.datetime cimport date_new, datetime_new, import_datetime, time_new
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from libc.math cimport ldexp
from libc.stdint cimport int8_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

cimport numpy as cnp

from _mbus cimport mbus_lvar_size, mbus_sum8

import datetime as _dt
from collections import namedtuple
from decimal import Decimal

import numpy as np

from mbusgw.core.errors import DecodeError, FrameError, UnsupportedError
from mbusgw.core.jsonout import dumps
from mbusgw.core.units import (
    APPLICATION_ERRORS,
    RECORD_ERRORS,
    Function,
    Modifier,
    Quantity,
    Unit,
    ValueKind,
    medium_name,
    unit_symbol,
)

# The VIF tables, and the codes of units.py as C enums (both generated).
cdef extern from "_vif_table.h":
    ctypedef struct mbus_vif_entry:
        uint8_t name
        uint8_t unit
        int8_t exponent
        uint8_t effect
        uint32_t multiplier
    const mbus_vif_entry MBUS_VIF_PRIMARY[128]
    const mbus_vif_entry MBUS_VIF_FB[128]
    const mbus_vif_entry MBUS_VIF_FD[128]
    const mbus_vif_entry MBUS_VIF_COMBINABLE[128]
    const mbus_vif_entry MBUS_VIF_COMBINABLE_EXT[128]
    const mbus_vif_entry MBUS_VIF_FIXED[128]
    enum:
        KIND_NONE
        KIND_DECIMAL
        KIND_REAL
        KIND_DATE
        KIND_DATETIME
        KIND_TIME
        KIND_TEXT
        KIND_BYTES
        KIND_BCD_ERROR
        FLAG_INVALID
        FLAG_SUMMER_TIME
        FLAG_MANUFACTURER_VIFE
        FLAG_MORE_MODIFIERS
        FLAG_SCALE_OVERFLOW
        FUNCTION_MANUFACTURER_SPECIFIC
        FUNCTION_MORE_RECORDS_FOLLOW
        QUANTITY_ANY_VIF
        QUANTITY_MANUFACTURER_DATA
        UNIT_NONE
        UNIT_S
        UNIT_MIN
        UNIT_H
        UNIT_DAY
        UNIT_PLAIN_TEXT
        EFFECT_VALUE
        EFFECT_DATE
        EFFECT_PLAIN_TEXT
        EFFECT_EXTENSION_FB
        EFFECT_EXTENSION_FD
        EFFECT_ANY
        EFFECT_MANUFACTURER
        EFFECT_RAW
        EFFECT_RESERVED
        EFFECT_MODIFIER
        EFFECT_SCALE
        EFFECT_DURATION
        EFFECT_COUNT
        EFFECT_ERROR
        EFFECT_EXTENSION


# One decoded record; RECORD_DTYPE is built from the offsets of these fields.
ctypedef struct RecordC:
    int64_t mantissa
    double real
    uint64_t storage
    uint32_t tariff
    uint16_t subunit
    uint16_t quantity
    uint16_t data_offset
    uint16_t data_length
    uint16_t difvif_offset
    uint16_t difvif_length
    uint16_t text_offset
    uint8_t text_length
    uint8_t function
    uint8_t kind
    uint8_t flags
    int8_t exponent
    uint8_t unit
    uint8_t modifier
    uint8_t modifier2
    uint8_t record_error
    uint8_t reserved[5]


# Header fields; ``has_*`` say which the application layer (or the caller) supplied.
ctypedef struct HeaderC:
    uint8_t id_bytes[4]     # identification number, most significant byte first
    uint16_t manufacturer
    uint16_t signature
    uint8_t version, medium, access_number, status
    bint has_id, has_access


cdef extern from "numpy/arrayobject.h":
    ctypedef struct _Descr "PyArray_Descr"
    # declared here because numpy's .pxd leaves it out; steals a reference to ``descr``
    object _array_from_descr "PyArray_NewFromDescr" (
        PyTypeObject* subtype, _Descr* descr, int nd, cnp.npy_intp* dims,
        cnp.npy_intp* strides, void* data, int flags, PyObject* obj)

cnp.import_array()

cdef extern from *:
    bint __builtin_mul_overflow(int64_t a, int64_t b, int64_t* out) nogil


cdef enum:
    MAX_DIFE = 10
    MAX_VIFE = 10
    SCRATCH_RECORDS = 256
    MAX_PAYLOAD = 65535
    LONG_HEADER = 12
    SHORT_HEADER = 4
    FIXED_DATA = 16

# The module-level scratch buffer: decoding holds the GIL and calls no Python code between
# filling it and copying it out, so one buffer serves every call.
cdef RecordC _scratch[SCRATCH_RECORDS]


cdef struct Cursor:
    const uint8_t* p    # start of the payload; offsets in errors and records are from here
    Py_ssize_t pos
    Py_ssize_t end
    bint msb_first
    RecordC* out
    Py_ssize_t capacity
    Py_ssize_t count
    Py_ssize_t mdata_offset   # manufacturer data of DIF 0x0F/0x1F, -1 when absent
    bint more_follow


cdef int _fail(str message, Py_ssize_t offset, Py_ssize_t record) except -1:
    raise DecodeError(message, offset, record)


# ------------------------------------------------------------------ numbers


cdef inline uint64_t _read_uint(const uint8_t* p, int n, bint msb_first) noexcept:
    cdef uint64_t v = 0
    cdef int i
    if msb_first:
        for i in range(n):
            v = (v << 8) | p[i]
    else:
        for i in range(n - 1, -1, -1):
            v = (v << 8) | p[i]
    return v


cdef inline int64_t _sign_extend(uint64_t v, int n) noexcept:
    cdef int bits = 8 * n
    if bits < 64 and (v >> (bits - 1)) & 1:
        v |= (<uint64_t>0xFFFFFFFFFFFFFFFF) << bits
    return <int64_t>v


cdef inline bint _bcd(uint64_t raw, int n, int64_t* value) noexcept:
    """Decode ``n`` bytes of BCD (``raw`` most significant nibble first). A most significant
    nibble F is a minus sign. Returns False if a digit is A-F (an error state)."""
    cdef int64_t v = 0
    cdef int i, nibble
    cdef bint negative = False
    for i in range(2 * n - 1, -1, -1):
        nibble = (raw >> (4 * i)) & 0xF
        if i == 2 * n - 1 and nibble == 0xF:
            negative = True
            continue
        if nibble > 9:
            return False
        v = v * 10 + nibble
    value[0] = -v if negative else v
    return True


# ------------------------------------------------------------------ dates


cdef inline int64_t _days_from_civil(int64_t y, int m, int d) noexcept:
    # Howard Hinnant's algorithm: days since 1970-01-01 of a proleptic Gregorian date.
    cdef int64_t era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline bint _valid_date(int y, int m, int d) noexcept:
    cdef int days
    if m < 1 or m > 12 or d < 1:
        return False
    if m == 2:
        days = 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    elif m in (4, 6, 9, 11):
        days = 30
    else:
        days = 31
    return d <= days


cdef inline int _two_digit_year(int year) noexcept:
    # EN 13757-3 annex A: two-digit years 00-80 are 2000-2080 (81-99: 1981-1999).
    return 2000 + year if year <= 80 else 1900 + year


cdef void _date_g(uint64_t v, RecordC* r) noexcept:
    cdef int day = v & 0x1F
    cdef int month = (v >> 8) & 0x0F
    cdef int year = _two_digit_year(((v >> 5) & 0x07) | ((v >> 9) & 0x78))
    r.kind = KIND_DATE
    if _valid_date(year, month, day):
        r.mantissa = _days_from_civil(year, month, day) * 86400
    else:
        r.flags |= FLAG_INVALID


cdef void _datetime_f(uint64_t v, RecordC* r) noexcept:
    cdef int minute = v & 0x3F
    cdef int hour = (v >> 8) & 0x1F
    cdef int hundred = (v >> 13) & 0x03
    cdef int day = (v >> 16) & 0x1F
    cdef int month = (v >> 24) & 0x0F
    cdef int yy = ((v >> 21) & 0x07) | ((v >> 25) & 0x78)
    cdef int year = _two_digit_year(yy) if hundred == 0 else 1900 + 100 * hundred + yy
    r.kind = KIND_DATETIME
    if v & 0x80:
        r.flags |= FLAG_INVALID
    if v & 0x8000:
        r.flags |= FLAG_SUMMER_TIME
    if minute < 60 and hour < 24 and _valid_date(year, month, day):
        r.mantissa = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60
    else:
        r.flags |= FLAG_INVALID


cdef void _datetime_i(uint64_t v, RecordC* r) noexcept:
    # Type I: a seconds byte, then minute (IV bit 7), hour (SU bit 7), day, month and year
    # laid out as in type F; the sixth byte (week, day of week) is not part of the value.
    cdef int second = v & 0x3F
    cdef int minute = (v >> 8) & 0x3F
    cdef int hour = (v >> 16) & 0x1F
    cdef int day = (v >> 24) & 0x1F
    cdef int month = (v >> 32) & 0x0F
    cdef int year = _two_digit_year(((v >> 29) & 0x07) | ((v >> 33) & 0x78))
    r.kind = KIND_DATETIME
    if v & 0x8000:
        r.flags |= FLAG_INVALID
    if v & 0x800000:
        r.flags |= FLAG_SUMMER_TIME
    if second < 60 and minute < 60 and hour < 24 and _valid_date(year, month, day):
        r.mantissa = (_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60
                      + second)
    else:
        r.flags |= FLAG_INVALID


cdef void _time_j(uint64_t v, RecordC* r) noexcept:
    cdef int second = v & 0x3F
    cdef int minute = (v >> 8) & 0x3F
    cdef int hour = (v >> 16) & 0x1F
    r.kind = KIND_TIME
    if second < 60 and minute < 60 and hour < 24:
        r.mantissa = hour * 3600 + minute * 60 + second
    else:
        r.flags |= FLAG_INVALID


# ------------------------------------------------------------------ records


cdef inline int _need(Cursor* c, Py_ssize_t n, str what) except -1:
    if c.pos + n > c.end:
        _fail(f"premature end of record at {what}", c.end, c.count)
    return 0


cdef inline RecordC* _new_record(Cursor* c, Py_ssize_t start) except NULL:
    cdef RecordC* r
    if c.count >= c.capacity:
        _fail("too many records for the record buffer", start, c.count)
    r = &c.out[c.count]
    memset(r, 0, sizeof(RecordC))
    r.difvif_offset = <uint16_t>start
    return r


cdef inline void _add_modifier(RecordC* r, uint8_t modifier) noexcept:
    if r.modifier == 0:
        r.modifier = modifier
    elif r.modifier2 == 0:
        r.modifier2 = modifier
    else:
        r.flags |= FLAG_MORE_MODIFIERS


cdef int _scale(RecordC* r, uint32_t multiplier) noexcept:
    """Multiply an exact value by a non-decimal factor (minutes to seconds ...). If that would
    overflow, a duration keeps the unit the meter sent and anything else becomes a float;
    either way the record is flagged."""
    cdef int64_t out
    cdef uint8_t native
    if multiplier == 1:
        return 0
    if r.kind == KIND_REAL:
        r.real *= multiplier
    elif r.kind == KIND_DECIMAL:
        if not __builtin_mul_overflow(r.mantissa, <int64_t>multiplier, &out):
            r.mantissa = out
            return 0
        r.flags |= FLAG_SCALE_OVERFLOW
        native = _native_time_unit(multiplier)
        if r.unit == UNIT_S and native != UNIT_NONE:
            r.unit = native
        else:
            r.kind = KIND_REAL
            r.real = <double>r.mantissa * multiplier
            r.mantissa = 0
    return 0


cdef inline uint8_t _native_time_unit(uint32_t multiplier) noexcept:
    if multiplier == 60:
        return UNIT_MIN
    if multiplier == 3600:
        return UNIT_H
    if multiplier == 86400:
        return UNIT_DAY
    return UNIT_NONE


cdef int _manufacturer_record(Cursor* c, Py_ssize_t start, uint8_t dif) except -1:
    cdef RecordC* r = _new_record(c, start)
    r.difvif_length = 1
    r.function = FUNCTION_MORE_RECORDS_FOLLOW if dif == 0x1F else FUNCTION_MANUFACTURER_SPECIFIC
    r.quantity = QUANTITY_MANUFACTURER_DATA
    r.kind = KIND_BYTES
    r.data_offset = <uint16_t>c.pos
    r.data_length = <uint16_t>(c.end - c.pos)
    c.mdata_offset = c.pos
    c.more_follow = dif == 0x1F
    c.pos = c.end
    c.count += 1
    return 0


cdef inline Py_ssize_t _field_size(int field) noexcept:
    """Bytes of a fixed-size data field (DIF low nibble other than 0x0D and 0x0F)."""
    if field <= 4:
        return field
    if field == 5:
        return 4
    if field == 6:
        return 6
    if field == 7:
        return 8
    if field == 0x0E:
        return 6
    return field - 8


cdef void _binary_number(const uint8_t* q, Py_ssize_t n, bint msb_first, RecordC* r) noexcept:
    """A signed binary number of ``n`` bytes (LVAR 0xE0-0xF6, up to 64 bytes): exact in the
    mantissa when it fits 64 bits, else the nearest real, flagged as an overflow."""
    cdef Py_ssize_t i
    cdef uint8_t fill, top
    cdef double value = 0.0
    if n <= 8:
        r.mantissa = _sign_extend(_read_uint(q, <int>n, msb_first), <int>n) if n else 0
        return
    # the low 8 bytes come last when the telegram is MSB first
    r.mantissa = <int64_t>_read_uint(q + n - 8 if msb_first else q, 8, msb_first)
    fill = 0xFF if r.mantissa < 0 else 0x00
    for i in range(8, n):
        if (q[n - 1 - i] if msb_first else q[i]) != fill:
            break
    else:
        return  # the upper bytes only repeat the sign
    for i in range(n):  # most significant byte first
        value = value * 256.0 + (q[i] if msb_first else q[n - 1 - i])
    top = q[0] if msb_first else q[n - 1]
    if top & 0x80:
        value -= ldexp(1.0, <int>(8 * n))
    r.kind = KIND_REAL
    r.real = value
    r.mantissa = 0
    r.flags |= FLAG_SCALE_OVERFLOW


cdef int _decode_value(Cursor* c, RecordC* r, int field, uint8_t effect) except -1:
    """Read the data field (DIF low nibble ``field``) at the cursor into ``r``."""
    cdef Py_ssize_t n = 0
    cdef uint8_t lvar
    cdef uint64_t raw
    cdef uint32_t bits
    cdef float f
    cdef int64_t value
    cdef const uint8_t* q
    if field == 0x0D:
        _need(c, 1, "variable length data")
        lvar = c.p[c.pos]
        c.pos += 1
        n = mbus_lvar_size(lvar)
        if n < 0:
            _fail(f"reserved LVAR 0x{lvar:02X}", c.pos - 1, c.count)
        # text up to 0xBF; BCD and binary numbers (0xE0-0xF6, any width) are numbers
        r.kind = KIND_TEXT if lvar <= 0xBF else KIND_DECIMAL
        _need(c, n, "data")
        r.data_offset = <uint16_t>c.pos
        r.data_length = <uint16_t>n
        q = c.p + c.pos
        c.pos += n
        assert c.pos <= c.end, "variable length data read past the payload"
        if r.kind == KIND_DECIMAL:
            if lvar >= 0xE0:
                _binary_number(q, n, c.msb_first, r)
            elif n > 8:
                r.kind = KIND_BYTES
            elif n and not _bcd(_read_uint(q, <int>n, c.msb_first), <int>n, &r.mantissa):
                r.kind = KIND_BCD_ERROR
                r.flags |= FLAG_INVALID
                r.mantissa = <int64_t>_read_uint(q, <int>n, c.msb_first)
            elif lvar >= 0xD0:
                r.mantissa = -r.mantissa
        elif effect == EFFECT_RAW:
            r.kind = KIND_BYTES
        return 0
    if field == 0 or field == 8:
        r.kind = KIND_NONE
        r.data_offset = <uint16_t>c.pos
        return 0
    n = _field_size(field)
    _need(c, n, "data")
    r.data_offset = <uint16_t>c.pos
    r.data_length = <uint16_t>n
    q = c.p + c.pos
    c.pos += n
    assert c.pos <= c.end, "data field read past the payload"
    raw = _read_uint(q, <int>n, c.msb_first)
    if effect == EFFECT_RAW:
        r.kind = KIND_BYTES
    elif field == 5:
        bits = <uint32_t>raw
        memcpy(&f, &bits, 4)
        r.real = f
        r.kind = KIND_REAL
    elif effect == EFFECT_DATE and field <= 7:
        if n == 2:
            _date_g(raw, r)
        elif n == 3:
            _time_j(raw, r)
        elif n == 4:
            _datetime_f(raw, r)
        elif n == 6:
            _datetime_i(raw, r)
        else:
            r.kind = KIND_DECIMAL
            r.mantissa = _sign_extend(raw, <int>n)
    elif field <= 7:
        r.kind = KIND_DECIMAL
        r.mantissa = _sign_extend(raw, <int>n)
    elif _bcd(raw, <int>n, &value):
        r.kind = KIND_DECIMAL
        r.mantissa = value
    else:
        r.kind = KIND_BCD_ERROR
        r.flags |= FLAG_INVALID
        r.mantissa = <int64_t>raw
    return 0


cdef int _decode_record(Cursor* c) except -1:
    """One record at the cursor (which is past idle fillers and not at the end)."""
    cdef Py_ssize_t start = c.pos
    cdef uint8_t dif = c.p[c.pos]
    cdef uint8_t b, vif
    cdef int ndife = 0, nvife = 0
    cdef bint ext, manufacturer_vife = False, combinable_ext = False
    cdef const mbus_vif_entry* entry
    cdef const mbus_vif_entry* ce
    cdef uint8_t effect
    cdef int exponent
    cdef uint32_t multiplier
    cdef RecordC* r
    c.pos += 1
    if dif == 0x0F or dif == 0x1F:
        return _manufacturer_record(c, start, dif)
    if (dif & 0x0F) == 0x0F:
        if dif != 0x7F:
            _fail(f"reserved DIF 0x{dif:02X}", start, c.count)
        # global readout request: a one-byte record without VIF or data
        r = _new_record(c, start)
        r.difvif_length = 1
        r.quantity = QUANTITY_ANY_VIF
        r.data_offset = <uint16_t>c.pos
        c.count += 1
        return 0
    r = _new_record(c, start)
    r.function = (dif >> 4) & 0x03
    r.storage = (dif >> 6) & 0x01
    ext = dif & 0x80
    while ext:
        if c.pos >= c.end:
            _fail("premature end of record at DIFE", c.pos, c.count)
        if ndife == MAX_DIFE:
            _fail("more than 10 DIFEs", c.pos, c.count)
        b = c.p[c.pos]
        c.pos += 1
        r.storage |= (<uint64_t>(b & 0x0F)) << (1 + 4 * ndife)
        r.tariff |= (<uint32_t>((b >> 4) & 0x03)) << (2 * ndife)
        r.subunit |= (<uint16_t>((b >> 6) & 0x01)) << ndife
        ndife += 1
        ext = b & 0x80
    if c.pos >= c.end:
        _fail("premature end of record at VIF", c.pos, c.count)
    vif = c.p[c.pos]
    c.pos += 1
    entry = &MBUS_VIF_PRIMARY[vif & 0x7F]
    ext = vif & 0x80
    if entry.effect == EFFECT_PLAIN_TEXT:
        if c.pos >= c.end:
            _fail("premature end of record at plain-text VIF", c.pos, c.count)
        b = c.p[c.pos]
        c.pos += 1
        if c.pos + b > c.end:
            _fail("premature end of record at plain-text VIF", c.end, c.count)
        r.text_offset = <uint16_t>c.pos
        r.text_length = b
        c.pos += b
    elif entry.effect == EFFECT_EXTENSION_FB or entry.effect == EFFECT_EXTENSION_FD:
        if ext:
            if c.pos >= c.end:
                _fail("premature end of record at VIFE", c.pos, c.count)
            b = c.p[c.pos]
            c.pos += 1
            nvife = 1
            entry = (&MBUS_VIF_FB[b & 0x7F] if entry.effect == EFFECT_EXTENSION_FB
                     else &MBUS_VIF_FD[b & 0x7F])
            ext = b & 0x80
        else:
            entry = &MBUS_VIF_PRIMARY[0x6F]   # 0x7B / 0x7D without extension bit: reserved
    r.quantity = entry.name
    r.unit = entry.unit
    exponent = entry.exponent
    multiplier = entry.multiplier
    effect = entry.effect
    if effect == EFFECT_MANUFACTURER:
        manufacturer_vife = True    # VIFEs after VIF 0x7F/0xFF are the manufacturer's too
        if ext:
            r.flags |= FLAG_MANUFACTURER_VIFE
    while ext:
        if c.pos >= c.end:
            _fail("premature end of record at VIFE", c.pos, c.count)
        if nvife == MAX_VIFE:
            _fail("more than 10 VIFEs", c.pos, c.count)
        b = c.p[c.pos]
        c.pos += 1
        nvife += 1
        ext = b & 0x80
        if manufacturer_vife:
            continue
        if combinable_ext:
            ce = &MBUS_VIF_COMBINABLE_EXT[b & 0x7F]
            combinable_ext = False
        else:
            ce = &MBUS_VIF_COMBINABLE[b & 0x7F]
        if ce.effect == EFFECT_SCALE:
            exponent += ce.exponent
            if ce.name:
                _add_modifier(r, ce.name)
        elif ce.effect == EFFECT_ERROR:
            r.record_error = b & 0x7F
        elif ce.effect == EFFECT_EXTENSION:
            combinable_ext = True
        elif ce.effect == EFFECT_MANUFACTURER:
            manufacturer_vife = True
            r.flags |= FLAG_MANUFACTURER_VIFE
        else:
            _add_modifier(r, ce.name)
            if ce.effect == EFFECT_DATE:
                effect = EFFECT_DATE
                r.unit = UNIT_NONE
                exponent = 0
                multiplier = 1
            elif ce.effect == EFFECT_COUNT:
                r.unit = UNIT_NONE
                exponent = 0
                multiplier = 1
            elif ce.effect == EFFECT_DURATION:
                r.unit = ce.unit
                exponent = 0
                multiplier = ce.multiplier
    r.difvif_length = <uint16_t>(c.pos - start)
    assert c.pos <= c.end, "DIF/VIF read past the payload"
    _decode_value(c, r, dif & 0x0F, effect)
    if effect == EFFECT_MANUFACTURER and r.kind == KIND_TEXT:
        r.kind = KIND_BYTES  # the manufacturer's data under VIF 0x7F/0xFF, not ISO 8859-1 text
    if r.kind == KIND_DECIMAL or r.kind == KIND_REAL:
        if exponent < -128 or exponent > 127:
            _fail(f"decimal exponent {exponent} out of range", start, c.count)
        r.exponent = <int8_t>exponent
        _scale(r, multiplier)
    c.count += 1
    return 0


cdef int _decode_records(Cursor* c) except -1:
    while c.pos < c.end:
        if c.p[c.pos] == 0x2F:
            c.pos += 1
            continue
        _decode_record(c)
    return 0


cdef inline bint _ignorable_mode(int mode) noexcept:
    """A security mode (EN 13757-7 table 18) that names no encryption: reserved (4, 6, 11, 12,
    14) or 16-31, a proprietary use of the configuration word (old meters put other data in
    it: libmbus' example_data_01 sends 27 B6, mode 22)."""
    return mode >= 16 or mode == 4 or mode == 6 or mode == 11 or mode == 12 or mode == 14


IGNORABLE_SECURITY_MODES = frozenset(mode for mode in range(32) if _ignorable_mode(mode))


cdef int _decode_records_under(Cursor* c, int signature) except -1:
    """Decode the records after a configuration word (``signature``, -1 for none). The one rule
    for a word whose security mode names no encryption: the payload is decoded as plain records
    when it parses as them, and 1 is returned (the word was ignored); otherwise the telegram is
    unsupported."""
    cdef int mode = (signature >> 8) & 0x1F if signature >= 0 else 0
    if not _ignorable_mode(mode):
        _decode_records(c)
        return 0
    try:
        _decode_records(c)
    except DecodeError as error:
        raise UnsupportedError(
            f"configuration word 0x{signature:04X} holds security mode {mode}, which names no "
            f"encryption, and the payload is not plain records: {error.message}",
            error.offset, error.record_index) from error
    return 1


# ------------------------------------------------------------------ fixed data structure


cdef int _fixed_record(Cursor* c, Py_ssize_t at, uint8_t unit_code, Py_ssize_t unit_at,
                       bint binary, bint stored) except -1:
    cdef RecordC* r = _new_record(c, unit_at)
    cdef const mbus_vif_entry* entry = &MBUS_VIF_FIXED[unit_code & 0x3F]
    cdef uint64_t raw = _read_uint(c.p + at, 4, c.msb_first)
    r.difvif_length = 1
    r.storage = 1 if stored else 0
    r.quantity = entry.name
    r.unit = entry.unit
    r.data_offset = <uint16_t>at
    r.data_length = 4
    if binary:
        r.kind = KIND_DECIMAL
        r.mantissa = _sign_extend(raw, 4)
    elif _bcd(raw, 4, &r.mantissa):
        r.kind = KIND_DECIMAL
    else:
        r.kind = KIND_BCD_ERROR
        r.flags |= FLAG_INVALID
        r.mantissa = <int64_t>raw
    if r.kind == KIND_DECIMAL:
        r.exponent = entry.exponent
    c.count += 1
    return 0


# ------------------------------------------------------------------ Python surface


cdef list _FUNCTION_NAMES = [f.name.lower() for f in Function]
cdef list _KIND_NAMES = [k.name.lower() for k in ValueKind]
# Indexed by the C codes: every value a uint8_t field can hold has an entry.
cdef list _QUANTITY_NAMES = [
    Quantity(i).name.lower() if i in Quantity._value2member_map_ else f"quantity_{i}"
    for i in range(256)
]
cdef list _UNIT_SYMBOLS = [
    unit_symbol(i) if i in Unit._value2member_map_ else f"unit_{i}" for i in range(256)
]
cdef list _MODIFIER_NAMES = [
    Modifier(i).name.lower() if i in Modifier._value2member_map_ else f"modifier_{i}"
    for i in range(256)
]
cdef list _RECORD_ERRORS = [RECORD_ERRORS.get(i, f"reserved (0x{i:02X})") for i in range(256)]
cdef list _POW10 = [10 ** i for i in range(128)]
cdef list _NEG_POW10 = [Decimal(1).scaleb(-i) for i in range(129)]
import_datetime()


cdef inline void _civil_from_days(int64_t z, int* y, int* m, int* d) noexcept:
    # inverse of _days_from_civil (Howard Hinnant)
    cdef int64_t era, doe, yoe, doy, mp
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d[0] = <int>(doy - (153 * mp + 2) // 5 + 1)
    m[0] = <int>(mp + 3 if mp < 10 else mp - 9)
    y[0] = <int>(yoe + era * 400 + (1 if m[0] <= 2 else 0))


def _record_dtype():
    cdef RecordC probe
    cdef char* base = <char*>&probe
    names_formats = [
        ("function", "u1", <Py_ssize_t>(<char*>&probe.function - base)),
        ("kind", "u1", <Py_ssize_t>(<char*>&probe.kind - base)),
        ("flags", "u1", <Py_ssize_t>(<char*>&probe.flags - base)),
        ("unit", "u1", <Py_ssize_t>(<char*>&probe.unit - base)),
        ("quantity", "<u2", <Py_ssize_t>(<char*>&probe.quantity - base)),
        ("exponent", "i1", <Py_ssize_t>(<char*>&probe.exponent - base)),
        ("subunit", "<u2", <Py_ssize_t>(<char*>&probe.subunit - base)),
        ("tariff", "<u4", <Py_ssize_t>(<char*>&probe.tariff - base)),
        ("storage", "<u8", <Py_ssize_t>(<char*>&probe.storage - base)),
        ("mantissa", "<i8", <Py_ssize_t>(<char*>&probe.mantissa - base)),
        ("real", "<f8", <Py_ssize_t>(<char*>&probe.real - base)),
        ("data_offset", "<u2", <Py_ssize_t>(<char*>&probe.data_offset - base)),
        ("data_length", "<u2", <Py_ssize_t>(<char*>&probe.data_length - base)),
        ("difvif_offset", "<u2", <Py_ssize_t>(<char*>&probe.difvif_offset - base)),
        ("difvif_length", "<u2", <Py_ssize_t>(<char*>&probe.difvif_length - base)),
        ("text_offset", "<u2", <Py_ssize_t>(<char*>&probe.text_offset - base)),
        ("text_length", "u1", <Py_ssize_t>(<char*>&probe.text_length - base)),
        ("modifier", "u1", <Py_ssize_t>(<char*>&probe.modifier - base)),
        ("modifier2", "u1", <Py_ssize_t>(<char*>&probe.modifier2 - base)),
        ("record_error", "u1", <Py_ssize_t>(<char*>&probe.record_error - base)),
    ]
    return np.dtype({
        "names": [name for name, _, _ in names_formats],
        "formats": [fmt for _, fmt, _ in names_formats],
        "offsets": [offset for _, _, offset in names_formats],
        "itemsize": sizeof(RecordC),
    })


RECORD_DTYPE = _record_dtype()

ApplicationError = namedtuple("ApplicationError", "code text")
ApplicationError.__doc__ = "The application error a CI 0x70 telegram reports."


cdef class Header:
    """The fields of the telegram header (None where the CI's header does not carry them)."""
    cdef readonly object id, manufacturer, version, medium, access_number, status, signature
    cdef readonly object ci

    def __init__(self, id=None, manufacturer=None, version=None, medium=None,
                 access_number=None, status=None, signature=None, ci=None):
        self.id = id
        self.manufacturer = manufacturer
        self.version = version
        self.medium = medium
        self.access_number = access_number
        self.status = status
        self.signature = signature
        self.ci = ci

    @property
    def medium_name(self) -> str:
        return medium_name(self.medium)

    def to_dict(self) -> dict:
        return {"id": self.id, "manufacturer": self.manufacturer, "version": self.version,
                "medium": self.medium, "access_number": self.access_number,
                "status": self.status, "signature": self.signature}

    def __eq__(self, other):
        if type(other) is not Header:
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.ci == (<Header>other).ci

    def __hash__(self):
        return hash(tuple(self.to_dict().values()))

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if v is not None)
        return f"Header({fields}, ci=0x{self.ci:02X})" if self.ci is not None else f"Header({fields})"


cdef str _letters(uint16_t code):
    """The manufacturer field as three letters (5 bits each, A = 1)."""
    cdef char out[3]
    cdef int i
    for i in range(3):
        out[i] = <char>(((code >> (10 - 5 * i)) & 0x1F) + 64)
    return out[:3].decode("latin-1")


cdef str _id_digits(const uint8_t* id_bytes):
    """Four bytes, most significant first, as eight hex digits (BCD digits read as decimal)."""
    cdef char out[8]
    cdef int i
    cdef const char* digits = b"0123456789ABCDEF"
    for i in range(4):
        out[2 * i] = digits[id_bytes[i] >> 4]
        out[2 * i + 1] = digits[id_bytes[i] & 0x0F]
    return out[:8].decode("ascii")


cdef class Record:
    """One record as Python values (for the CLI, the web and tests); fields are computed from
    the decoded C record on access."""
    cdef RecordC _r
    cdef bytes _payload
    cdef bint _msb_first
    cdef object _value
    cdef bint _has_value

    @property
    def function(self) -> str:
        return _FUNCTION_NAMES[self._r.function]

    @property
    def storage(self) -> int:
        return self._r.storage

    @property
    def tariff(self) -> int:
        return self._r.tariff

    @property
    def subunit(self) -> int:
        return self._r.subunit

    @property
    def quantity(self) -> str:
        return _QUANTITY_NAMES[self._r.quantity]

    @property
    def unit(self) -> str:
        if self._r.unit != UNIT_PLAIN_TEXT:
            return _UNIT_SYMBOLS[self._r.unit]
        text = self._payload[self._r.text_offset:self._r.text_offset + self._r.text_length]
        return (text if self._msb_first else text[::-1]).decode("latin-1")

    @property
    def value(self):
        """int, Decimal (exact), float (real32 only), date/datetime/time, str or bytes."""
        if not self._has_value:
            self._value = _value(&self._r, self._payload, self._msb_first)
            self._has_value = True
        return self._value

    @property
    def kind(self) -> str:
        return _KIND_NAMES[self._r.kind]

    @property
    def exponent(self) -> int:
        return self._r.exponent

    @property
    def dif_vif(self) -> str:
        """The DIF..VIFE bytes (with a plain-text VIF) as upper-case hex."""
        start = self._r.difvif_offset
        return self._payload[start:start + self._r.difvif_length].hex().upper()

    @property
    def invalid(self) -> bool:
        return self._r.flags & FLAG_INVALID != 0

    @property
    def summer_time(self) -> bool:
        return self._r.flags & FLAG_SUMMER_TIME != 0

    @property
    def flags(self) -> int:
        return self._r.flags

    @property
    def modifiers(self) -> tuple:
        """Names of the combinable VIFEs that qualify the value (per_hour, at_phase_l1 ...)."""
        if self._r.modifier2:
            return (_MODIFIER_NAMES[self._r.modifier], _MODIFIER_NAMES[self._r.modifier2])
        if self._r.modifier:
            return (_MODIFIER_NAMES[self._r.modifier],)
        return ()

    @property
    def record_error(self):
        """The record error a VIFE 0x00-0x1F reports, or None."""
        return _RECORD_ERRORS[self._r.record_error] if self._r.record_error else None

    def to_dict(self) -> dict:
        out = {"function": self.function, "storage": self.storage, "tariff": self.tariff,
               "subunit": self.subunit, "quantity": self.quantity, "unit": self.unit,
               "value": _json_value(self.value), "dif_vif": self.dif_vif}
        if self.invalid:
            out["invalid"] = True
        if self.summer_time:
            out["summer_time"] = True
        if self._r.modifier:
            out["modifiers"] = list(self.modifiers)
        if self._r.record_error:
            out["record_error"] = self.record_error
        return out

    def __repr__(self):
        return (f"Record({self.function}, storage={self.storage}, tariff={self.tariff}, "
                f"subunit={self.subunit}, {self.quantity}={self.value!r} {self.unit})")


cdef object _json_value(object value):
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


cdef object _value(const RecordC* r, bytes payload, bint msb_first):
    cdef int k = r.kind
    cdef int64_t m = r.mantissa
    cdef int y, mo, d
    cdef bytes data
    if k == KIND_DECIMAL:
        if r.exponent >= 0:
            return m * _POW10[r.exponent] if r.exponent else m
        return Decimal(m) * _NEG_POW10[-r.exponent]
    if k == KIND_REAL:
        return r.real * 10.0 ** r.exponent if r.exponent else r.real
    if k == KIND_DATE or k == KIND_DATETIME:
        if r.flags & FLAG_INVALID and m == 0:
            return None
        _civil_from_days(m // 86400, &y, &mo, &d)
        if k == KIND_DATE:
            return date_new(y, mo, d)
        m = m % 86400
        return datetime_new(y, mo, d, <int>(m // 3600), <int>((m // 60) % 60), <int>(m % 60),
                            0, None)
    if k == KIND_TIME:
        if r.flags & FLAG_INVALID:
            return None
        return time_new(<int>(m // 3600), <int>((m // 60) % 60), <int>(m % 60), 0, None)
    if k == KIND_TEXT:
        data = payload[r.data_offset:r.data_offset + r.data_length]
        return (data if msb_first else data[::-1]).decode("latin-1")
    if k == KIND_BYTES:
        return payload[r.data_offset:r.data_offset + r.data_length]
    if k == KIND_BCD_ERROR:
        return format(<uint64_t>m, "0%dX" % (2 * r.data_length))
    return None


cdef inline Record _make_record(const RecordC* r, bytes payload, bint msb_first):
    cdef Record rec = Record.__new__(Record)
    rec._r = r[0]
    rec._payload = payload
    rec._msb_first = msb_first
    return rec


cdef class Telegram:
    """A decoded application layer. ``array``/``records`` are built on first access."""
    cdef readonly bytes payload
    cdef readonly int ci
    cdef readonly bint more_records_follow
    cdef readonly bint configuration_ignored
    cdef bytes _buffer
    cdef Py_ssize_t _count
    cdef HeaderC _h
    cdef bint _msb_first
    cdef Py_ssize_t _mdata_offset, _mdata_length
    cdef int _error_code        # CI 0x70, -1 otherwise
    cdef Py_ssize_t _alarm_offset, _alarm_length
    cdef object _header, _records, _array, _given

    @property
    def header(self) -> Header:
        if self._header is None:
            self._header = self._make_header()
        return self._header

    cdef Header _make_header(self):
        cdef Header given = self._given
        cdef Header h = Header.__new__(Header)
        cdef HeaderC* c = &self._h
        h.ci = self.ci
        if c.has_id:
            h.id = _id_digits(c.id_bytes)
            h.manufacturer = _letters(c.manufacturer)
            h.version = c.version
            h.medium = c.medium
        elif given is not None:
            h.id, h.manufacturer = given.id, given.manufacturer
            h.version, h.medium = given.version, given.medium
        if c.has_access:
            h.access_number = c.access_number
            h.status = c.status
            h.signature = c.signature
        elif given is not None:
            h.access_number, h.status, h.signature = (given.access_number, given.status,
                                                      given.signature)
        if self.ci == 0x73 or self.ci == 0x77:
            h.manufacturer = None
            h.version = None
            h.signature = None
        return h

    @property
    def array(self):
        """One row per record, dtype ``RECORD_DTYPE``; offsets point into ``payload``.

        A read-only view of the decoder's buffer (no copy)."""
        cdef cnp.npy_intp dims[1]
        if self._array is None:
            dims[0] = self._count
            Py_INCREF(RECORD_DTYPE)
            array = _array_from_descr(
                <PyTypeObject*>np.ndarray, <_Descr*><PyObject*>RECORD_DTYPE, 1, dims, NULL,
                <void*>PyBytes_AS_STRING(self._buffer),
                cnp.NPY_ARRAY_ALIGNED | cnp.NPY_ARRAY_C_CONTIGUOUS, NULL)
            cnp.set_array_base(array, self._buffer)
            self._array = array
        return self._array

    @property
    def records(self) -> list:
        if self._records is None:
            self._records = self._make_records()
        return self._records

    cdef list _make_records(self):
        cdef const RecordC* base = <const RecordC*>PyBytes_AS_STRING(self._buffer)
        cdef Py_ssize_t i
        return [_make_record(&base[i], self.payload, self._msb_first) for i in range(self._count)]

    def record(self, Py_ssize_t index) -> Record:
        """Record ``index`` alone, made anew and not kept: a telegram that lives on (in the
        continuous-read snapshot) then holds no list of every record for one value looked at."""
        cdef const RecordC* base = <const RecordC*>PyBytes_AS_STRING(self._buffer)
        if self._records is not None:
            return self._records[index]
        if not 0 <= index < self._count:
            raise IndexError(index)
        return _make_record(&base[index], self.payload, self._msb_first)

    def __len__(self):
        return self._count

    @property
    def manufacturer_data(self):
        """Bytes after DIF 0x0F/0x1F (wire order), or None."""
        if self._mdata_offset < 0:
            return None
        return self.payload[self._mdata_offset:self._mdata_offset + self._mdata_length]

    @property
    def error(self):
        """``ApplicationError(code, text)`` of a CI 0x70 telegram, else None."""
        if self._error_code < 0:
            return None
        return ApplicationError(self._error_code, APPLICATION_ERRORS.get(
            self._error_code, f"unknown error (0x{self._error_code:02X})"))

    @property
    def alarm(self):
        """Alarm status of a CI 0x71 telegram (little-endian integer), else None."""
        if self._alarm_offset < 0:
            return None
        return int.from_bytes(
            self.payload[self._alarm_offset:self._alarm_offset + self._alarm_length], "little")

    def to_dict(self) -> dict:
        out = {"header": self.header.to_dict(), "records": [r.to_dict() for r in self.records]}
        if self._error_code >= 0:
            code, text = self.error
            out["error"] = {"code": code, "text": text}
        if self._alarm_offset >= 0:
            out["alarm"] = self.alarm
        if self.more_records_follow:
            out["more_records_follow"] = True
        if self.configuration_ignored:
            out["configuration_ignored"] = True
        return out

    def to_json(self) -> str:
        """``to_dict()`` as compact JSON, decimals printed exactly."""
        return dumps(self.to_dict())

    def __repr__(self):
        return f"Telegram(ci=0x{self.ci:02X}, records={self._count}, header={self.header!r})"


cdef int _read_header(Cursor* c, HeaderC* h, bint long_header) except -1:
    cdef const uint8_t* q = c.p + c.pos
    cdef int i
    assert c.pos + (LONG_HEADER if long_header else SHORT_HEADER) <= c.end, "header past payload"
    if long_header:
        for i in range(4):
            h.id_bytes[i] = q[i] if c.msb_first else q[3 - i]
        h.manufacturer = <uint16_t>_read_uint(q + 4, 2, c.msb_first)
        h.version = q[6]
        h.medium = q[7]
        h.has_id = True
        q += 8
        c.pos += 8
    h.access_number = q[0]
    h.status = q[1]
    h.signature = <uint16_t>_read_uint(q + 2, 2, c.msb_first)
    h.has_access = True
    c.pos += 4
    return 0


cdef Telegram _decode(bytes payload, Py_ssize_t start, Py_ssize_t end, int ci, Header given):
    """Decode the application layer in ``payload[start:end]`` whose CI field is ``ci``."""
    cdef Telegram t = Telegram.__new__(Telegram)
    cdef Cursor c
    cdef RecordC* heap = NULL
    cdef Py_ssize_t n = end - start
    if PyBytes_GET_SIZE(payload) > MAX_PAYLOAD:
        raise DecodeError(f"{PyBytes_GET_SIZE(payload)} bytes exceed the {MAX_PAYLOAD} a record "
                          "offset can address", MAX_PAYLOAD)
    t.payload = payload
    t.ci = ci
    t._given = given
    t._mdata_offset = -1
    t._error_code = -1
    t._alarm_offset = -1
    memset(&t._h, 0, sizeof(HeaderC))
    c.p = <const uint8_t*>PyBytes_AS_STRING(payload)
    c.pos = start
    c.end = end
    c.msb_first = ci == 0x76 or ci == 0x77
    c.count = 0
    c.mdata_offset = -1
    c.more_follow = False
    t._msb_first = c.msb_first
    if ci == 0x70:
        t._error_code = c.p[start] if n else 0
        t._buffer = b""
        return t
    if ci == 0x71:
        t._alarm_offset = start
        t._alarm_length = n
        t._buffer = b""
        return t
    if n + 1 > SCRATCH_RECORDS:
        heap = <RecordC*>PyMem_Malloc((n + 1) * sizeof(RecordC))
        if heap == NULL:
            raise MemoryError()
        c.out = heap
        c.capacity = n + 1
    else:
        c.out = _scratch
        c.capacity = SCRATCH_RECORDS
    try:
        if ci == 0x72 or ci == 0x76:
            if n < LONG_HEADER:
                raise DecodeError(f"variable data header too short: {n} of {LONG_HEADER} bytes",
                                  end)
            _read_header(&c, &t._h, True)
            t.configuration_ignored = _decode_records_under(&c, t._h.signature)
        elif ci == 0x7A:
            if n < SHORT_HEADER:
                raise DecodeError(f"short header too short: {n} of {SHORT_HEADER} bytes", end)
            _read_header(&c, &t._h, False)
            t.configuration_ignored = _decode_records_under(&c, t._h.signature)
        elif ci == 0x78 or ci == 0x51:
            # a wireless transport header's configuration word comes with the link's header
            t.configuration_ignored = _decode_records_under(
                &c, -1 if given is None or given.signature is None else given.signature)
        elif ci == 0x73 or ci == 0x77:
            if n != FIXED_DATA:
                raise DecodeError(f"fixed data structure needs {FIXED_DATA} bytes, got {n}",
                                  end if n < FIXED_DATA else start + FIXED_DATA)
            _decode_fixed(&c, &t._h)
        else:
            raise UnsupportedError(f"CI field 0x{ci:02X} is not a wired application layer "
                                   "this decoder handles", start - 1 if start else 0)
        t._count = c.count
        t._buffer = PyBytes_FromStringAndSize(<char*>c.out, c.count * sizeof(RecordC))
    finally:
        if heap != NULL:
            PyMem_Free(heap)
    t._mdata_offset = c.mdata_offset
    t._mdata_length = end - c.mdata_offset
    t.more_records_follow = c.more_follow
    return t


cdef int _decode_fixed(Cursor* c, HeaderC* h) except -1:
    cdef const uint8_t* q = c.p + c.pos
    cdef Py_ssize_t at = c.pos
    cdef int i
    cdef uint8_t status
    assert c.pos + FIXED_DATA <= c.end, "fixed data structure past the payload"
    cdef Py_ssize_t low, high     # the medium/unit field: unit 1 in the low byte, unit 2 high
    status = q[5]
    for i in range(4):
        h.id_bytes[i] = q[i] if c.msb_first else q[3 - i]
    h.has_id = True
    h.access_number = q[4]
    h.status = status
    h.has_access = True
    low, high = (7, 6) if c.msb_first else (6, 7)
    h.medium = ((q[high] & 0xC0) >> 4) | ((q[low] & 0xC0) >> 6)
    _fixed_record(c, at + 8, q[low], at + low, status & 0x80, status & 0x40)
    _fixed_record(c, at + 12, q[high], at + high, status & 0x80, status & 0x40)
    c.pos = c.end
    return 0


cdef bytes _as_bytes(data):
    if type(data) is bytes:
        return <bytes>data
    return bytes(data)


def decode_application(int ci, data, Header header=None) -> Telegram:
    """Decode an application layer: ``data`` is everything after the CI field.

    ``header`` supplies what the link layer knows (identification, manufacturer, version,
    medium) for CIs whose own header is short (0x7A) or absent (0x78); the telegram's own
    fields take precedence. Offsets in errors and in the record array are into ``data``.
    """
    cdef bytes payload = _as_bytes(data)
    if not 0 <= ci <= 0xFF:
        raise ValueError(f"CI field {ci} is outside 0-255")
    return _decode(payload, 0, PyBytes_GET_SIZE(payload), ci, header)


def decode(frame) -> Telegram:
    """Decode a complete wired long frame (68 L L 68 C A CI data CS 16).

    Offsets in errors and in the record array are into ``frame``.
    """
    cdef bytes raw = _as_bytes(frame)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    cdef Py_ssize_t length
    if (n < 9 or p[0] != 0x68 or p[3] != 0x68 or p[1] != p[2] or p[1] < 3 or n != p[1] + 6
            or p[n - 1] != 0x16 or mbus_sum8(p + 4, p[1]) != p[n - 2]):
        _raise_frame_error(raw)
    return _decode(raw, 7, n - 2, p[6], None)


cdef int _raise_frame_error(bytes raw) except -1:
    # The frame module owns the framing rules and their messages; ask it what is wrong.
    from mbusgw.core.frame import LongFrame, parse_frame
    event = parse_frame(raw)
    if not isinstance(event, LongFrame):
        raise FrameError(f"{type(event).__name__} is not a long frame with an application layer", 0)
    raise FrameError("long frame without application data", 0)
