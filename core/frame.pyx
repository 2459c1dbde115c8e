"""EN 13757-2 link layer framing, sans-I/O.

``FrameParser`` takes bytes as they come off a line and turns them into events: ``SingleChar``
(the E5 acknowledgement), ``ShortFrame``, ``ControlFrame``, ``LongFrame``, and ``Discarded`` for
bytes that are not part of a valid frame. Garbage never raises: it becomes a ``Discarded`` event
and the parser resynchronises on the next start byte, so good frames queued behind bad bytes on a
noisy line are not lost. Adjacent discarded bytes are reported as one event, when the next good
event arrives or on ``flush()``, so the events do not depend on how the input was chunked.

The builders make the master's requests: SND_NKE, REQ_UD1/REQ_UD2 with FCB, secondary selection
(with wildcards, optionally enhanced with the fabrication number), application reset, and the
change of a meter's primary address.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from libc.stdint cimport uint8_t

from _mbus cimport mbus_sum8

from mbusgw.core.errors import ChecksumError, EncodeError, FrameError

cdef enum:
    ACK = 0xE5
    SHORT_START = 0x10
    LONG_START = 0x68
    STOP = 0x16

# Control fields (EN 13757-2 table 4).
SND_NKE = 0x40
SND_UD = 0x53
REQ_UD1 = 0x5A
REQ_UD2 = 0x5B
FCB = 0x20
RSP_UD = 0x08

# CI fields of the requests built here.
CI_APPLICATION_RESET = 0x50
CI_DATA_SEND = 0x51
CI_SELECTION = 0x52

ADDRESS_NETWORK_LAYER = 0xFD  # "selected" meter after a secondary selection
ADDRESS_BROADCAST_REPLY = 0xFE
ADDRESS_BROADCAST = 0xFF


cdef class SingleChar:
    """The single character E5: a positive acknowledgement."""
    cdef readonly Py_ssize_t offset

    def __init__(self, Py_ssize_t offset):
        self.offset = offset

    def __eq__(self, other):
        return type(other) is SingleChar and (<SingleChar>other).offset == self.offset

    def __hash__(self):
        return hash((SingleChar, self.offset))

    def __repr__(self):
        return f"SingleChar(offset={self.offset})"


cdef class ShortFrame:
    """10 C A CS 16: SND_NKE, REQ_UD1, REQ_UD2."""
    cdef readonly Py_ssize_t offset
    cdef readonly int control, address

    def __init__(self, Py_ssize_t offset, int control, int address):
        self.offset = offset
        self.control = control
        self.address = address

    def __eq__(self, other):
        if type(other) is not ShortFrame:
            return NotImplemented
        o = <ShortFrame>other
        return (o.offset, o.control, o.address) == (self.offset, self.control, self.address)

    def __hash__(self):
        return hash((ShortFrame, self.offset, self.control, self.address))

    def __repr__(self):
        return (f"ShortFrame(offset={self.offset}, control=0x{self.control:02X}, "
                f"address={self.address})")


cdef class LongFrame:
    """68 L L 68 C A CI data CS 16. ``raw`` is the whole frame; ``data`` the bytes after CI.

    A control frame (L = 3: no data) is a ``ControlFrame``, a subclass.
    """
    cdef readonly Py_ssize_t offset
    cdef readonly bytes raw

    def __init__(self, Py_ssize_t offset, bytes raw):
        self.offset = offset
        self.raw = raw

    @property
    def control(self) -> int:
        return self.raw[4]

    @property
    def address(self) -> int:
        return self.raw[5]

    @property
    def ci(self) -> int:
        return self.raw[6]

    @property
    def data(self) -> bytes:
        return self.raw[7:-2]

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        o = <LongFrame>other
        return o.offset == self.offset and o.raw == self.raw

    def __hash__(self):
        return hash((type(self), self.offset, self.raw))

    def __repr__(self):
        return f"{type(self).__name__}(offset={self.offset}, raw={self.raw.hex(' ')!r})"


cdef class ControlFrame(LongFrame):
    """68 03 03 68 C A CI CS 16: a long frame without data (e.g. application reset)."""


cdef class Discarded:
    """``nbytes`` bytes starting at stream ``offset`` were not a valid frame; ``error`` says why
    (the reason for the first of them when several adjacent runs were merged)."""
    cdef readonly Py_ssize_t offset, nbytes
    cdef readonly object error

    def __init__(self, Py_ssize_t offset, Py_ssize_t nbytes, error):
        self.offset = offset
        self.nbytes = nbytes
        self.error = error

    def __eq__(self, other):
        if type(other) is not Discarded:
            return NotImplemented
        o = <Discarded>other
        return (o.offset == self.offset and o.nbytes == self.nbytes
                and type(o.error) is type(self.error) and str(o.error) == str(self.error))

    def __hash__(self):
        return hash((Discarded, self.offset, self.nbytes))

    def __repr__(self):
        return f"Discarded(offset={self.offset}, nbytes={self.nbytes}, error={self.error!r})"


# Outcome of looking at the bytes at one position.
cdef enum Verdict:
    NEED_MORE = 0
    GOOD = 1
    BAD = 2


cdef class _Check:
    """What ``_check_at`` found: a frame of ``length`` bytes, or ``length`` bytes to discard."""
    cdef Verdict verdict
    cdef Py_ssize_t length
    cdef object error


cdef Py_ssize_t frame_at(const uint8_t* p, Py_ssize_t avail) noexcept nogil:
    cdef uint8_t first = p[0]
    cdef Py_ssize_t n
    if first == ACK:
        return 1
    if first == SHORT_START:
        n = 5
        if avail < n:
            return 0
        if p[4] != STOP or p[3] != mbus_sum8(p + 1, 2):
            return -1
        return n
    if first != LONG_START:
        return -1
    if avail < 4:
        return 0
    if p[1] != p[2] or p[3] != LONG_START or p[1] < 3:
        return -1
    n = p[1] + 6
    if avail < n:
        return 0
    if p[n - 1] != STOP or p[n - 2] != mbus_sum8(p + 4, <size_t>p[1]):
        return -1
    return n


cdef Verdict _check_at(const uint8_t* p, Py_ssize_t avail, Py_ssize_t offset, bint eof,
                       _Check out) except *:
    """Classify the bytes at ``p`` (``avail`` of them, stream offset ``offset``): the verdict
    is ``frame_at``'s; what is wrong with bad bytes is told here."""
    cdef Py_ssize_t found = frame_at(p, avail)
    if found > 0:
        out.length = found
        return GOOD
    if found == 0:
        if not eof:
            return NEED_MORE
        need = 5 if p[0] == SHORT_START else (4 if avail < 4 else p[1] + 6)
        return _bad(out, 1, FrameError(f"truncated frame: {avail} of {need} bytes",
                                       offset + avail))
    return _bad_at(p, avail, offset, out)


cdef Verdict _bad_at(const uint8_t* p, Py_ssize_t avail, Py_ssize_t offset,
                     _Check out) except *:
    """What is wrong with bytes ``frame_at`` found to be no valid frame."""
    cdef uint8_t first = p[0]
    cdef Py_ssize_t n, length
    cdef uint8_t expected
    if first == SHORT_START:
        if p[4] != STOP:
            return _bad(out, 1, FrameError("short frame without stop byte 0x16", offset + 4))
        expected = mbus_sum8(p + 1, 2)
        return _bad(out, 5, ChecksumError(
            f"short frame checksum 0x{p[3]:02X}, expected 0x{expected:02X}",
            offset + 3, expected, p[3]))
    if first == LONG_START:
        if p[1] != p[2]:
            return _bad(out, 1, FrameError(
                f"long frame length fields differ (0x{p[1]:02X}, 0x{p[2]:02X})", offset + 1))
        if p[3] != LONG_START:
            return _bad(out, 1, FrameError("long frame without second start byte 0x68",
                                           offset + 3))
        length = p[1]
        if length < 3:
            return _bad(out, 1, FrameError(f"long frame length {length} is below 3", offset + 1))
        n = length + 6
        if p[n - 1] != STOP:
            return _bad(out, 1, FrameError("long frame without stop byte 0x16", offset + n - 1))
        expected = mbus_sum8(p + 4, <size_t>length)
        return _bad(out, n, ChecksumError(
            f"long frame checksum 0x{p[n - 2]:02X}, expected 0x{expected:02X}",
            offset + n - 2, expected, p[n - 2]))
    return _bad(out, 1, FrameError(f"byte 0x{first:02X} is not a frame start", offset))


cdef inline Verdict _bad(_Check out, Py_ssize_t n, error):
    out.length = n
    out.error = error
    return BAD


cdef object _make_event(const uint8_t* p, Py_ssize_t length, Py_ssize_t offset):
    if length == 1:
        return SingleChar(offset)
    if length == 5:
        return ShortFrame(offset, p[1], p[2])
    raw = (<char*>p)[:length]
    if length == 9:
        return ControlFrame(offset, raw)
    return LongFrame(offset, raw)


cdef class FrameParser:
    """Incremental parser: ``feed(data)``, then ``events()``; ``flush()`` at the end of a
    reception (timeout, end of stream) reports whatever is left as discarded."""
    cdef bytearray _buf
    cdef Py_ssize_t _base          # stream offset of _buf[0]
    cdef Py_ssize_t _pend_off, _pend_n
    cdef object _pend_err
    cdef _Check _check

    def __init__(self):
        self._buf = bytearray()
        self._base = 0
        self._pend_n = 0
        self._check = _Check()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of an event (an incomplete frame or discarded run)."""
        return PyByteArray_GET_SIZE(self._buf) + self._pend_n

    @property
    def offset(self) -> int:
        """Stream offset of the next byte to be fed."""
        return self._base + PyByteArray_GET_SIZE(self._buf)

    def feed(self, data) -> None:
        self._buf += data

    def events(self) -> list:
        """Every complete event the fed bytes make so far."""
        return self._run(False)

    def flush(self) -> list:
        """The remaining events, treating the input as ended: incomplete frames are discarded."""
        return self._run(True)

    cdef list _run(self, bint eof):
        cdef list out = []
        cdef Py_ssize_t size = PyByteArray_GET_SIZE(self._buf)
        cdef const uint8_t* p = <const uint8_t*>PyByteArray_AS_STRING(self._buf)
        cdef Py_ssize_t pos = 0
        cdef Verdict verdict
        while pos < size:
            verdict = _check_at(p + pos, size - pos, self._base + pos, eof, self._check)
            if verdict == NEED_MORE:
                break
            if verdict == BAD:
                self._discard(self._base + pos, self._check.length, self._check.error)
                self._check.error = None
            else:
                self._flush_pending(out)
                out.append(_make_event(p + pos, self._check.length, self._base + pos))
            pos += self._check.length
        if eof:
            self._flush_pending(out)
        if pos:
            del self._buf[:pos]
            self._base += pos
        return out

    cdef void _discard(self, Py_ssize_t offset, Py_ssize_t n, error):
        if self._pend_n and self._pend_off + self._pend_n == offset:
            self._pend_n += n
            return
        self._pend_off = offset
        self._pend_n = n
        self._pend_err = error

    cdef void _flush_pending(self, list out):
        if self._pend_n:
            out.append(Discarded(self._pend_off, self._pend_n, self._pend_err))
            self._pend_n = 0
            self._pend_err = None


def parse_frame(data) -> object:
    """Parse exactly one complete frame; raise FrameError/ChecksumError otherwise."""
    cdef const uint8_t[:] view = data
    cdef Py_ssize_t n = view.shape[0]
    cdef _Check check = _Check()
    if n == 0:
        raise FrameError("empty frame", 0)
    verdict = _check_at(&view[0], n, 0, True, check)
    if verdict == BAD:
        raise check.error
    if check.length != n:
        raise FrameError(f"{n - check.length} bytes after the end of the frame", check.length)
    return _make_event(&view[0], check.length, 0)


# ---------------------------------------------------------------- builders


cdef bytes _short(int control, int address):
    if not 0 <= address <= 255:
        raise EncodeError(f"address {address} is outside 0-255")
    return bytes((SHORT_START, control, address, (control + address) & 0xFF, STOP))


cdef bytes _long(int control, int address, int ci, bytes data):
    cdef int length = 3 + len(data)
    if length > 255:
        raise EncodeError(f"{len(data)} data bytes do not fit in a long frame")
    if not 0 <= address <= 255:
        raise EncodeError(f"address {address} is outside 0-255")
    body = bytes((control, address, ci)) + data
    return (bytes((LONG_START, length, length, LONG_START)) + body
            + bytes(((sum(body) & 0xFF), STOP)))


def snd_nke(int address) -> bytes:
    """SND_NKE: link reset of one meter (or 0xFD for the selected one, 0xFF for all)."""
    return _short(SND_NKE, address)


def req_ud2(int address, bint fcb=False) -> bytes:
    """REQ_UD2 with FCV set; ``fcb`` toggles per exchange to ask for the next telegram."""
    return _short(REQ_UD2 | (FCB if fcb else 0), address)


def req_ud1(int address, bint fcb=False) -> bytes:
    """REQ_UD1: request alarm (class 1) data."""
    return _short(REQ_UD1 | (FCB if fcb else 0), address)


def application_reset(int address, subcode=None, bint fcb=False) -> bytes:
    """SND_UD with CI 0x50, optionally with the one-byte reset subcode (EN 13757-3 table 5)."""
    data = b"" if subcode is None else bytes((_byte(subcode, "subcode"),))
    return _long(SND_UD | (FCB if fcb else 0), address, CI_APPLICATION_RESET, data)


def set_primary_address(int address, int new_address) -> bytes:
    """SND_UD writing a new primary address (DIF 0x01, VIF 0x7A)."""
    if not 0 <= new_address <= 250:
        raise EncodeError(f"primary address {new_address} is outside 0-250")
    return _long(SND_UD, address, CI_DATA_SEND, bytes((0x01, 0x7A, new_address)))


def select_secondary(str mask, manufacturer=None, version=None, medium=None,
                     fabrication=None) -> bytes:
    """SND_UD to address 0xFD with CI 0x52: select the meter matching ``mask``.

    ``mask`` is the 8-digit identification number; ``F`` in a digit is a wildcard. A missing
    manufacturer, version or medium matches anything. ``fabrication`` (an 8-digit string, F
    wildcards allowed) makes it the enhanced selection of EN 13757-3 annex.
    """
    data = _id_bytes(mask, "identification") + _manufacturer_bytes(manufacturer)
    data += bytes((0xFF if version is None else _byte(version, "version"),
                   0xFF if medium is None else _byte(medium, "medium")))
    if fabrication is not None:
        data += b"\x0C\x78" + _id_bytes(fabrication, "fabrication number")
    return _long(SND_UD, ADDRESS_NETWORK_LAYER, CI_SELECTION, data)


def parse_selection(bytes data) -> tuple:
    """Inverse of ``select_secondary`` on the data after CI 0x52:
    ``(mask, manufacturer, version, medium, fabrication)`` with None for wildcards."""
    if len(data) not in (8, 14) or (len(data) == 14 and data[8:10] != b"\x0C\x78"):
        raise FrameError(f"selection data of {len(data)} bytes is neither plain nor enhanced", 0)
    man = int.from_bytes(data[4:6], "little")
    fabrication = _id_digits(data[10:14]) if len(data) == 14 else None
    return (_id_digits(data[:4]), None if man == 0xFFFF else manufacturer_letters(man),
            None if data[6] == 0xFF else data[6], None if data[7] == 0xFF else data[7],
            fabrication)


cdef int _byte(value, str what) except -1:
    if not 0 <= value <= 255:
        raise EncodeError(f"{what} {value} is outside 0-255")
    return value


cdef bytes _id_bytes(str digits, str what):
    if len(digits) != 8 or any(c not in "0123456789ABCDEFabcdef" for c in digits):
        raise EncodeError(f"{what} {digits!r} must be 8 hexadecimal digits (F = wildcard)")
    return bytes.fromhex(digits)[::-1]


cdef str _id_digits(bytes wire):
    return wire[::-1].hex().upper()


def manufacturer_code(str letters) -> int:
    """Three letters A-Z to the 2-byte manufacturer field (EN 62056-21 flag id)."""
    if len(letters) != 3 or not all("A" <= c <= "Z" for c in letters.upper()):
        raise EncodeError(f"manufacturer {letters!r} must be three letters A-Z")
    letters = letters.upper()
    return ((ord(letters[0]) - 64) << 10) | ((ord(letters[1]) - 64) << 5) | (ord(letters[2]) - 64)


def manufacturer_letters(int code) -> str:
    """The 2-byte manufacturer field as three letters (reserved values come out as-is)."""
    return "".join(chr(((code >> shift) & 0x1F) + 64) for shift in (10, 5, 0))


cdef bytes _manufacturer_bytes(manufacturer):
    if manufacturer is None:
        return b"\xFF\xFF"
    code = manufacturer_code(manufacturer) if isinstance(manufacturer, str) else manufacturer
    if not 0 <= code <= 0xFFFF:
        raise EncodeError(f"manufacturer code {code} is outside 0-0xFFFF")
    return code.to_bytes(2, "little")
