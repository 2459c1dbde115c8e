"""Wireless M-Bus (EN 13757-4, EN 13757-7, OMS) below the application layer, sans-I/O.

One function per layer, in the standard's vocabulary:

* ``strip_crc`` — data link layer frame format A or B: check and remove the block CRCs (or take a
  telegram whose CRCs a receiver already removed), returning the frame with a consistent L-field;
* ``decode_wireless`` — DLL (L, C, M, A), Extended Link Layer (CI 0x8C–0x8F, AES-128-CTR with its
  payload CRC), Authentication and Fragmentation Layer (CI 0x90: message counter and MAC),
  transport layer (no / short / long header) and its security modes, giving a
  ``WirelessTelegram`` whose ``payload`` is the plaintext application layer;
* ``decode_transport`` — the transport layer alone, shared with wired long frames (CI 0x72 with an
  encrypted payload).

Keys come in as an argument: ``None``, one key, a list of keys to try in turn, or a callable
``keys(meter) -> iterable of keys`` (the gateway's key store). A telegram whose security bits say
"encrypted" but whose payload is already plaintext (2F2F, or an ELL payload CRC matching the plain
bytes) decodes without a key and is never decrypted twice. Failures are typed, so a user can be
told what is wrong: ``MissingKeyError`` (no key), ``DecryptError`` (wrong key: the 2F2F check, the
ELL payload CRC or the AFL MAC failed), ``ChecksumError``/``FrameError`` (damaged or truncated
frame), ``UnsupportedError`` (a security mode or layer this gateway does not implement). Errors
raised once the meter's address is known carry it as ``error.meter``.
"""

from cpython.bytes cimport PyBytes_AS_STRING
from libc.stdint cimport uint8_t, uint16_t

from _mbus cimport mbus_crc16

from mbusgw.core.crypto import AesKey, DesKey, kdf_a, cmac_with, make_key
from mbusgw.core.errors import (
    ChecksumError,
    DecodeError,
    DecryptError,
    FrameError,
    MBusError,
    MissingKeyError,
    UnsupportedError,
)
from mbusgw.core.records import IGNORABLE_SECURITY_MODES

FRAME_FORMATS = ("auto", "A", "B", "stripped")  # also reported: "stripped-last-crc"

# Data link layer sizes (EN 13757-4): the first block holds L, C, M (2) and A (6).
cdef enum:
    DLL_HEADER = 10
    BLOCK_A = 16          # data bytes per following format A block
    BLOCK_B_FIRST = 126   # format B: bytes covered by the first CRC when the frame is longer
    MAX_RECEIVER_TAIL = 2  # bytes a receiver may append (RSSI, LQI)

CI_ELL = (0x8C, 0x8D, 0x8E, 0x8F)
CI_AFL = 0x90
PLAIN_MARK = b"\x2f\x2f"   # an encrypted TPL payload starts with two fill bytes once decrypted

# C-field values of wireless telegrams (EN 13757-4 table 10).
CONTROL_NAMES = {
    0x40: "SND_NKE", 0x44: "SND_NR", 0x46: "SND_IR", 0x47: "ACC_NR", 0x48: "ACC_DMD",
    0x53: "SND_UD", 0x43: "SND_UD2", 0x5A: "REQ_UD1", 0x5B: "REQ_UD2", 0x4C: "REQ_UD1",
    0x00: "ACK", 0x01: "NACK", 0x06: "CNF_IR", 0x08: "RSP_UD",
}

# Transport layer CI fields: (header, payload kind). The payload kinds are "records" (EN 13757-3
# data records), "compact" (compact frame: format signature and data only), "format" (a format
# frame: the record headers of a compact layout), "none" (no application layer), and kinds that
# are passed on raw.
TPL_LAYOUT = {
    0x72: ("long", "records"), 0x73: ("long", "compact"), 0x78: ("none", "records"),
    0x79: ("none", "compact"), 0x7A: ("short", "records"), 0x7B: ("short", "compact"),
    0x69: ("none", "format"), 0x6A: ("short", "format"), 0x6B: ("long", "format"),
    0x6E: ("short", "application-error"), 0x6F: ("long", "application-error"),
    0x70: ("none", "application-error"), 0x74: ("short", "alarm"), 0x75: ("long", "alarm"),
    0x7C: ("long", "cosem"), 0x7D: ("short", "cosem"), 0x7E: ("long", "obis"),
    0x7F: ("short", "obis"), 0x8A: ("short", "none"), 0x8B: ("long", "none"),
}

# TPL security modes (EN 13757-7 table 18), the number in CF bits 8-12.
SECURITY_MODES = {
    0: "no encryption",
    1: "manufacturer specific",
    2: "DES-CBC, IV zero (deprecated)",
    3: "DES-CBC, IV from the header (deprecated)",
    4: "reserved",
    5: "AES-128-CBC, IV from the header",
    6: "reserved",
    7: "AES-128-CBC, IV zero, key derived from the message counter",
    8: "AES-128-CTR with CMAC",
    9: "AES-128-GCM",
    10: "AES-128-CCM",
    11: "reserved",
    12: "reserved",
    13: "TLS",
    14: "reserved",
    15: "manufacturer specific",
}
IMPLEMENTED_MODES = (0, 2, 3, 5, 7)
ELL_ENCRYPTIONS = {0: "none", 1: "AES-128-CTR"}


def security_mode_name(int mode) -> str:
    if mode >= 16:
        return "proprietary use of the configuration field"
    return SECURITY_MODES[mode]


def is_manufacturer_ci(int ci) -> bool:
    return 0xA0 <= ci <= 0xB7


# ---------------------------------------------------------------- small helpers


cdef inline uint16_t _crc(const uint8_t* p, Py_ssize_t n):
    return mbus_crc16(p, <size_t>n)


cdef inline int _be16(const uint8_t* p):
    return (p[0] << 8) | p[1]


cdef inline int _le16(const uint8_t* p):
    return p[0] | (p[1] << 8)


cdef inline long _le32(const uint8_t* p):
    return <long>p[0] | (<long>p[1] << 8) | (<long>p[2] << 16) | (<long>p[3] << 24)


cdef str _letters(int code):
    cdef char out[3]
    out[0] = <char>(((code >> 10) & 0x1F) + 64)
    out[1] = <char>(((code >> 5) & 0x1F) + 64)
    out[2] = <char>((code & 0x1F) + 64)
    return out[:3].decode("latin-1")


cdef class MeterId:
    """A meter address: manufacturer, identification number, version, device type (medium).

    ``address`` is the 8 bytes M(2) ‖ ID(4) ‖ version ‖ type in DLL order, the material of the
    mode 5 IV and the ELL counter block.
    """
    cdef readonly str manufacturer
    cdef readonly str id
    cdef readonly int manufacturer_code, version, device_type
    cdef readonly bytes address

    def __init__(self, str manufacturer, str id, int version, int device_type):
        from mbusgw.core.frame import manufacturer_code
        if len(id) != 8:
            raise ValueError(f"meter id {id!r} must have 8 digits")
        self.manufacturer_code = manufacturer_code(manufacturer)
        self.manufacturer = manufacturer.upper()
        self.id = id.upper()
        self.version = version
        self.device_type = device_type
        self.address = (self.manufacturer_code.to_bytes(2, "little") + bytes.fromhex(self.id)[::-1]
                        + bytes((version & 0xFF, device_type & 0xFF)))

    @property
    def id_bytes(self) -> bytes:
        """The identification number as sent (4 bytes, least significant first)."""
        return self.address[2:6]

    def to_dict(self) -> dict:
        return {"manufacturer": self.manufacturer, "id": self.id, "version": self.version,
                "device_type": self.device_type}

    def __eq__(self, other):
        if type(other) is not MeterId:
            return NotImplemented
        return (<MeterId>other).address == self.address

    def __hash__(self):
        return hash((MeterId, self.address))

    def __repr__(self):
        return (f"MeterId({self.manufacturer!r}, {self.id!r}, version={self.version}, "
                f"device_type={self.device_type})")

    def __str__(self):
        return f"{self.manufacturer} {self.id} (version {self.version}, type {self.device_type})"


# Meter addresses repeat telegram after telegram: their objects are kept (a bounded memo).
cdef dict _METERS = {}
cdef enum:
    METERS_KEPT = 100000


cdef MeterId _meter_from_wire(const uint8_t* p, bint long_header_order):
    """DLL order is M(2) ID(4) V T; the long TPL header sends ID(4) M(2) V T."""
    cdef bytes wire = (<const char*>p)[:8]
    cdef object key = (wire, long_header_order)
    cdef object found = _METERS.get(key)
    if found is not None:
        return <MeterId>found
    cdef MeterId m = MeterId.__new__(MeterId)
    cdef const uint8_t* man = p + 4 if long_header_order else p
    cdef const uint8_t* ident = p if long_header_order else p + 2
    m.manufacturer_code = _le16(man)
    m.manufacturer = _letters(m.manufacturer_code)
    m.id = "%02X%02X%02X%02X" % (ident[3], ident[2], ident[1], ident[0])
    m.version = p[6]
    m.device_type = p[7]
    m.address = bytes((man[0], man[1], ident[0], ident[1], ident[2], ident[3], p[6], p[7]))
    if len(_METERS) >= METERS_KEPT:
        _METERS.clear()
    _METERS[key] = m
    return m


def meter_from_dll(data) -> MeterId:
    """The DLL address of a frame (its bytes 2–9), without any check."""
    cdef const uint8_t[:] view = data
    if view.shape[0] < DLL_HEADER:
        raise FrameError(f"{view.shape[0]} bytes hold no wireless M-Bus address", 0)
    return _meter_from_wire(&view[2], False)


# ---------------------------------------------------------------- data link layer: CRCs


cdef Py_ssize_t _format_a_length(int length):
    """Bytes of a format A frame with CRCs whose L-field is ``length``."""
    cdef int rest = length - (DLL_HEADER - 1)
    return length + 1 + 2 * (1 + (rest + BLOCK_A - 1) // BLOCK_A)


cdef bint _format_b_ok(const uint8_t* p, Py_ssize_t total):
    """Do the format B CRCs of a frame of ``total`` (= L + 1) bytes verify?"""
    if total < DLL_HEADER + 2:
        return False
    if total <= BLOCK_B_FIRST + 2:
        return _crc(p, total - 2) == _be16(p + total - 2)
    if total < BLOCK_B_FIRST + 5:
        return False
    return (_crc(p, BLOCK_B_FIRST) == _be16(p + BLOCK_B_FIRST)
            and _crc(p + BLOCK_B_FIRST + 2, total - BLOCK_B_FIRST - 4) == _be16(p + total - 2))


cdef bint _last_crc_kept(const uint8_t* p, Py_ssize_t n):
    """Are the last two bytes the format A CRC of the (non-empty) last block before them?"""
    cdef Py_ssize_t end = n - 2, start
    if end <= DLL_HEADER:
        return False
    start = DLL_HEADER + BLOCK_A * ((end - DLL_HEADER - 1) // BLOCK_A)
    return _crc(p + start, end - start) == _be16(p + end)


cdef bytes _strip_a(const uint8_t* p, Py_ssize_t n, int length):
    cdef Py_ssize_t pos = 0, end, block = 0, size
    cdef int expected, actual
    out = bytearray()
    cdef Py_ssize_t total = _format_a_length(length)
    size = DLL_HEADER
    while pos < total:
        end = pos + size
        expected = _crc(p + pos, size)
        actual = _be16(p + end)
        if expected != actual:
            raise ChecksumError(
                f"format A block {block} CRC 0x{actual:04X}, expected 0x{expected:04X}",
                end, expected, actual, block)
        out += (<char*>p)[pos:end]
        pos = end + 2
        block += 1
        size = min(BLOCK_A, total - pos - 2)
    return bytes(out)


cdef bytes _strip_b(const uint8_t* p, Py_ssize_t total):
    cdef int expected, actual
    cdef Py_ssize_t first_end = min(total - 2, BLOCK_B_FIRST)
    expected = _crc(p, first_end)
    actual = _be16(p + first_end)
    if expected != actual:
        raise ChecksumError(f"format B block 1 CRC 0x{actual:04X}, expected 0x{expected:04X}",
                            first_end, expected, actual, 0)
    if first_end == total - 2:
        body = (<char*>p)[:first_end]
        return bytes((len(body) - 1,)) + body[1:]
    if total < BLOCK_B_FIRST + 5:
        raise FrameError(f"format B frame of {total} bytes has no room for its second block",
                         total)
    expected = _crc(p + BLOCK_B_FIRST + 2, total - BLOCK_B_FIRST - 4)
    actual = _be16(p + total - 2)
    if expected != actual:
        raise ChecksumError(f"format B block 2 CRC 0x{actual:04X}, expected 0x{expected:04X}",
                            total - 2, expected, actual, 1)
    body = (<char*>p)[:BLOCK_B_FIRST] + (<char*>p)[BLOCK_B_FIRST + 2:total - 2]
    return bytes((len(body) - 1,)) + body[1:]


def strip_crc(data, str frame_format="auto") -> tuple:
    """Check and remove the block CRCs: ``(frame, format, trailing)``.

    ``frame`` starts with an L-field that counts the bytes after it (without CRCs), so
    ``len(frame) == frame[0] + 1``. ``format`` is "A", "B" or "stripped" (the CRCs had already
    been removed, as receivers such as the iM871A and AMB8465 deliver telegrams). ``trailing`` are
    bytes after the frame (a receiver's RSSI byte, for example), left out of ``frame``.

    With ``frame_format="auto"`` a telegram of exactly L + 1 bytes is format B when its CRCs
    verify and stripped otherwise; a longer one is format A when the CRC of its first block
    verifies (or when it is as long as a format A frame, give or take a receiver's RSSI byte),
    format B when its first L + 1 bytes pass the format B CRCs, and stripped with trailing
    bytes otherwise. Some receivers remove every block CRC but the last one and count it in the
    L-field: a stripped telegram whose last two bytes are the format A CRC of its last block
    comes back without them, as format "stripped-last-crc".
    """
    if frame_format not in FRAME_FORMATS:
        raise ValueError(f"frame format {frame_format!r} is not one of {FRAME_FORMATS}")
    cdef const uint8_t[:] view = data
    cdef Py_ssize_t n = view.shape[0]
    if n == 0:
        raise FrameError("empty telegram", 0)
    cdef const uint8_t* p = &view[0]
    cdef int length = p[0]
    if length < DLL_HEADER - 1:
        raise FrameError(f"L-field {length} is too small for a wireless M-Bus frame", 0)
    cdef Py_ssize_t total_a = _format_a_length(length)
    cdef str fmt = frame_format
    if fmt == "auto":
        if n == length + 1:
            if _format_b_ok(p, n):
                fmt = "B"
            elif _last_crc_kept(p, n):
                return (bytes((length - 2,)) + bytes(view[1:n - 2]), "stripped-last-crc",
                        b"")
            else:
                fmt = "stripped"
        elif n > length + 1:
            if n >= DLL_HEADER + 2 and _crc(p, DLL_HEADER) == _be16(p + DLL_HEADER):
                fmt = "A"
            elif _format_b_ok(p, length + 1):
                fmt = "B"
            else:  # as long as a format A frame: one whose first block is damaged
                fmt = "A" if total_a <= n <= total_a + MAX_RECEIVER_TAIL else "stripped"
        else:
            raise FrameError(f"truncated telegram: {n} bytes, the L-field announces {length + 1}",
                             n)
    if fmt == "A":
        if n < total_a:
            raise FrameError(f"truncated format A telegram: {n} of {total_a} bytes", n)
        return _strip_a(p, n, length), "A", bytes(view[total_a:])
    if n < length + 1:
        raise FrameError(f"truncated telegram: {n} bytes, the L-field announces {length + 1}", n)
    if fmt == "B":
        return _strip_b(p, length + 1), "B", bytes(view[length + 1:])
    return bytes(view[:length + 1]), "stripped", bytes(view[length + 1:])


def add_crc_format_a(frame) -> bytes:
    """Insert the format A block CRCs into a stripped frame (simulated receivers, tests)."""
    cdef bytes raw = bytes(frame)
    cdef Py_ssize_t pos = 0, size = DLL_HEADER
    out = bytearray()
    while pos < len(raw):
        chunk = raw[pos:pos + size]
        out += chunk
        out += _crc(<const uint8_t*>PyBytes_AS_STRING(chunk), len(chunk)).to_bytes(2, "big")
        pos += size
        size = BLOCK_A
    return bytes(out)


def add_crc_format_b(frame) -> bytes:
    """Insert the format B CRCs into a stripped frame; the L-field then counts them."""
    cdef bytes raw = bytes(frame)
    ncrc = 1 if len(raw) + 2 <= BLOCK_B_FIRST + 2 else 2
    body = bytes((len(raw) - 1 + 2 * ncrc,)) + raw[1:]
    if ncrc == 1:
        return body + _crc(<const uint8_t*>PyBytes_AS_STRING(body), len(body)).to_bytes(2, "big")
    first = body[:BLOCK_B_FIRST]
    rest = body[BLOCK_B_FIRST:]
    return (first + _crc(<const uint8_t*>PyBytes_AS_STRING(first), len(first)).to_bytes(2, "big")
            + rest + _crc(<const uint8_t*>PyBytes_AS_STRING(rest), len(rest)).to_bytes(2, "big"))


# ---------------------------------------------------------------- layer objects


cdef class LinkLayer:
    """The data link layer: frame format, L, C and the sender's address."""
    cdef readonly str format
    cdef readonly int length, control
    cdef readonly MeterId meter
    cdef readonly bytes trailing

    @property
    def control_name(self) -> str:
        return CONTROL_NAMES.get(self.control, f"0x{self.control:02X}")

    def to_dict(self) -> dict:
        out = {"format": self.format, "length": self.length, "c_field": f"{self.control:02X}",
               "control": self.control_name, **self.meter.to_dict()}
        if self.trailing:
            out["trailing"] = self.trailing.hex().upper()
        return out


cdef class ExtendedLinkLayer:
    """CI 0x8C–0x8F: communication control, access number, optional second address, and for
    0x8D/0x8F the session number (with the encryption bits) and the payload CRC."""
    cdef readonly int ci, cc, acc
    cdef readonly MeterId address
    cdef readonly object session_number, payload_crc
    cdef readonly int encryption
    cdef readonly str state

    def to_dict(self) -> dict:
        out = {"ci": f"{self.ci:02X}", "cc": f"{self.cc:02X}", "acc": self.acc}
        if self.address is not None:
            out["address"] = self.address.to_dict()
        if self.session_number is not None:
            sn = self.session_number
            out.update(session_number=sn, session=sn & 0xF, time=(sn >> 4) & 0x1FFFFFF,
                       encryption=ELL_ENCRYPTIONS.get(self.encryption, "reserved"),
                       payload_crc=f"{self.payload_crc:04X}", state=self.state)
        return out


cdef class AuthLayer:
    """CI 0x90, the Authentication and Fragmentation Layer of an unfragmented message."""
    cdef readonly int length, fcl, fragment_id
    cdef readonly bint more_fragments
    cdef readonly object mcl, key_info, message_counter, message_length
    cdef readonly bytes mac

    @property
    def auth_type(self):
        return None if self.mcl is None else self.mcl & 0x0F

    def to_dict(self) -> dict:
        out = {"ci": "90", "length": self.length, "fcl": f"{self.fcl:04X}",
               "more_fragments": self.more_fragments, "fragment_id": self.fragment_id}
        if self.mcl is not None:
            out["mcl"] = f"{self.mcl:02X}"
        if self.key_info is not None:
            out["key_info"] = f"{self.key_info:04X}"
        if self.message_counter is not None:
            out["message_counter"] = self.message_counter
        if self.mac is not None:
            out["mac"] = self.mac.hex().upper()
        if self.message_length is not None:
            out["message_length"] = self.message_length
        return out


cdef class TransportLayer:
    """The transport layer header: none, short (ACC, status, CF) or long (address + short)."""
    cdef readonly int ci
    cdef readonly str header, payload_kind
    cdef readonly MeterId meter
    cdef readonly object access_number, status, configuration, cfe
    cdef readonly int security_mode, truncated
    cdef readonly str state

    @property
    def encrypted_blocks(self):
        return None if self.configuration is None else (self.configuration >> 4) & 0x0F

    @property
    def kdf(self):
        return None if self.cfe is None else (self.cfe >> 4) & 0x03

    @property
    def key_id(self):
        return None if self.cfe is None else self.cfe & 0x0F

    def to_dict(self) -> dict:
        out = {"ci": f"{self.ci:02X}", "header": self.header, "payload": self.payload_kind}
        if self.meter is not None:
            out.update(self.meter.to_dict())
        if self.access_number is not None:
            out["access_number"] = self.access_number
            out["status"] = f"{self.status:02X}"
        if self.configuration is not None:
            out.update(configuration=f"{self.configuration:04X}",
                       security_mode=self.security_mode,
                       security=security_mode_name(self.security_mode),
                       encrypted_blocks=self.encrypted_blocks, state=self.state)
        if self.cfe is not None:
            out.update(cfe=f"{self.cfe:02X}", kdf=self.kdf, key_id=self.key_id)
        if self.truncated:
            out["truncated_bytes"] = self.truncated
        return out


cdef class WirelessTelegram:
    """A telegram below the application layer, decrypted.

    ``payload`` is the plaintext after the TPL header (for compact frames: format signature,
    full-frame CRC and data), ``payload_kind`` says what it holds (see ``TPL_LAYOUT``; also
    "manufacturer" for CI 0xA0–0xB7). ``meter`` is the meter's identity: the long TPL header's
    address when there is one (repeaters, radio modules), the DLL address otherwise. ``key`` is the
    key that decrypted it (never serialised). ``rssi`` (dBm) is filled in by a receiver, and
    ``application`` (the decoded records, a ``mbusgw.core.records.Telegram``) by the
    ``WirelessDecoder``.
    """
    cdef readonly LinkLayer link
    cdef readonly ExtendedLinkLayer ell
    cdef readonly AuthLayer afl
    cdef readonly TransportLayer tpl
    cdef readonly MeterId meter
    cdef readonly int ci
    cdef readonly bytes payload, frame
    cdef readonly str payload_kind
    cdef readonly object key
    cdef public object rssi
    cdef public object application

    @property
    def decryption(self) -> str:
        """"decrypted" (a layer was decrypted here), "pre-decrypted" (flagged encrypted but sent
        or stored as plaintext) or "none"."""
        states = [layer.state for layer in (self.ell, self.tpl)
                  if layer is not None and layer.state not in ("none", "ignored")]
        if "decrypted" in states:
            return "decrypted"
        return "pre-decrypted" if states else "none"

    def link_dict(self) -> dict:
        """The ``"link"`` object of the decode JSON: format, ELL/AFL/TPL fields, security, RSSI."""
        out = self.link.to_dict()
        if self.ell is not None:
            out["ell"] = self.ell.to_dict()
        if self.afl is not None:
            out["afl"] = self.afl.to_dict()
        if self.tpl is not None:
            out["tpl"] = self.tpl.to_dict()
        out["ci"] = f"{self.ci:02X}"
        out["payload_kind"] = self.payload_kind
        out["decryption"] = self.decryption
        if self.rssi is not None:
            out["rssi"] = self.rssi
        return out

    def with_payload(self, bytes payload not None, str payload_kind not None):
        """A copy with another application payload (a compact frame rebuilt to full records,
        a payload cut back to its whole records)."""
        cdef WirelessTelegram t = WirelessTelegram.__new__(WirelessTelegram)
        t.link, t.ell, t.afl, t.tpl, t.meter = self.link, self.ell, self.afl, self.tpl, self.meter
        t.ci, t.frame, t.key, t.rssi = self.ci, self.frame, self.key, self.rssi
        t.application = self.application
        t.payload = payload
        t.payload_kind = payload_kind
        return t

    def to_dict(self) -> dict:
        """The JSON shape of a decoded wired frame (header, records) plus ``"link"``; a payload
        without EN 13757-3 records (manufacturer specific, COSEM ...) is given as hex."""
        if self.application is not None:
            out = self.application.to_dict()
        else:
            out = {"header": self.header_dict(), "records": []}
            if self.payload:
                name = ("manufacturer_data" if self.payload_kind == "manufacturer"
                        else "payload")
                out[name] = self.payload.hex().upper()
        out["link"] = self.link_dict()
        return out

    def header_dict(self) -> dict:
        """Header fields in the records' header shape, from the address and the TPL."""
        out = {"id": self.meter.id, "manufacturer": self.meter.manufacturer,
               "version": self.meter.version, "medium": self.meter.device_type,
               "access_number": None, "status": None, "signature": None}
        if self.tpl is not None and self.tpl.access_number is not None:
            out.update(access_number=self.tpl.access_number, status=self.tpl.status,
                       signature=self.tpl.configuration)
        return out

    def __repr__(self):
        return (f"WirelessTelegram(meter={self.meter!r}, ci=0x{self.ci:02X}, "
                f"payload_kind={self.payload_kind!r}, decryption={self.decryption!r})")


# ---------------------------------------------------------------- key candidates


cdef list _candidates(keys, MeterId meter):
    if keys is None:
        return []
    if isinstance(keys, (AesKey, DesKey, bytes, bytearray, str)):
        return [make_key(keys)]
    if callable(keys):
        found = keys(meter)
        return [] if found is None else [make_key(k) for k in found]
    return [make_key(k) for k in keys]


cdef str _tried(list candidates):
    return "1 key" if len(candidates) == 1 else f"{len(candidates)} keys"


# ---------------------------------------------------------------- extended link layer


cdef tuple _decode_ell(bytes frame, Py_ssize_t pos, MeterId dll_meter, keys):
    """Parse the ELL at ``pos`` (its CI) and decrypt what follows: ``(ell, rest, key)``."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t n = len(frame)
    cdef ExtendedLinkLayer ell = ExtendedLinkLayer.__new__(ExtendedLinkLayer)
    ell.ci = p[pos]
    cdef Py_ssize_t size = {0x8C: 2, 0x8D: 8, 0x8E: 10, 0x8F: 16}[ell.ci]
    if pos + 1 + size > n:
        raise DecodeError(f"ELL CI 0x{ell.ci:02X} needs {size} bytes, {n - pos - 1} left", pos)
    cdef Py_ssize_t q = pos + 1
    ell.cc = p[q]
    ell.acc = p[q + 1]
    q += 2
    ell.state = "none"
    if ell.ci in (0x8E, 0x8F):
        ell.address = _meter_from_wire(p + q, False)
        q += 8
    if ell.ci in (0x8C, 0x8E):
        return ell, frame[q:], None
    sn = _le32(p + q)
    ell.session_number = sn
    ell.encryption = (sn >> 29) & 0x07
    ell.payload_crc = _le16(p + q + 4)
    cdef bytes body = frame[q + 6:]
    if ell.encryption == 0:
        return ell, body, None
    if ell.encryption != 1:
        raise UnsupportedError(f"ELL encryption {ell.encryption} is reserved", q)
    if _crc(<const uint8_t*>PyBytes_AS_STRING(body), len(body)) == ell.payload_crc:
        ell.state = "pre-decrypted"
        return ell, body, None
    candidates = [k for k in _candidates(keys, dll_meter) if isinstance(k, AesKey)]
    if not candidates:
        raise MissingKeyError(
            f"ELL AES-128-CTR encrypted telegram from {dll_meter} and no key for it", q, None)
    counter = (dll_meter.address + bytes((ell.cc & ~0x12,)) + frame[q:q + 4]
               + b"\x00\x00\x00")
    encrypted = frame[q + 4:]
    for key in candidates:
        plain = key.ctr_crypt(counter, encrypted)
        if _crc(<const uint8_t*>PyBytes_AS_STRING(plain) + 2, len(plain) - 2) == _le16(
                <const uint8_t*>PyBytes_AS_STRING(plain)):
            ell.payload_crc = _le16(<const uint8_t*>PyBytes_AS_STRING(plain))
            ell.state = "decrypted"
            return ell, plain[2:], key
    raise DecryptError(f"ELL payload CRC does not match after AES-CTR decryption with "
                       f"{_tried(candidates)} for {dll_meter}: wrong key", q + 4, None)


# ---------------------------------------------------------------- authentication layer


cdef AuthLayer _decode_afl(bytes data):
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = len(data)
    if n < 4:
        raise DecodeError("AFL header truncated", 0)
    cdef AuthLayer afl = AuthLayer.__new__(AuthLayer)
    afl.length = p[1]
    if 2 + afl.length > n or afl.length < 2:
        raise DecodeError(f"AFL length {afl.length} does not fit in {n - 2} bytes", 1)
    cdef Py_ssize_t q = 2, end = 2 + afl.length
    afl.fcl = _le16(p + q)
    q += 2
    afl.fragment_id = afl.fcl & 0xFF
    afl.more_fragments = bool(afl.fcl & 0x4000)
    if afl.fcl & 0x2000:
        afl.mcl = p[q]
        q += 1
    if afl.fcl & 0x0200:
        afl.key_info = _le16(p + q)
        q += 2
    if afl.fcl & 0x0800:
        afl.message_counter = _le32(p + q)
        q += 4
    cdef Py_ssize_t tail = 2 if afl.fcl & 0x1000 else 0
    if afl.fcl & 0x0400:
        afl.mac = data[q:end - tail]
        q = end - tail
    if tail:
        afl.message_length = _le16(p + q)
        q += 2
    if q != end:
        raise DecodeError(f"AFL fields take {q - 2} bytes, AFLL says {afl.length}", 1)
    if afl.more_fragments:
        raise UnsupportedError(
            f"AFL fragment {afl.fragment_id} of a fragmented message: reassembly of fragmented "
            "messages is not implemented", 2)
    return afl


# ---------------------------------------------------------------- transport layer


cdef tuple _parse_tpl_header(int ci, bytes data):
    """``(tpl, header_size)`` for the TPL at the start of ``data`` (its CI included)."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = len(data)
    cdef TransportLayer tpl = TransportLayer.__new__(TransportLayer)
    tpl.ci = ci
    tpl.state = "none"
    tpl.security_mode = 0
    header, tpl.payload_kind = TPL_LAYOUT[ci]
    tpl.header = header
    cdef Py_ssize_t q = 1
    if header == "none":
        return tpl, q
    if header == "long":
        if n < q + 8:
            raise DecodeError(f"long TPL header truncated: {n - 1} of 12 bytes", n)
        tpl.meter = _meter_from_wire(p + q, True)
        q += 8
    if n < q + 4:
        raise DecodeError(f"TPL header truncated after {n} bytes", n)
    tpl.access_number = p[q]
    tpl.status = p[q + 1]
    tpl.configuration = _le16(p + q + 2)
    tpl.security_mode = (tpl.configuration >> 8) & 0x1F
    q += 4
    if tpl.security_mode == 7:
        if n < q + 1:
            raise DecodeError("mode 7 TPL header without its configuration field extension", n)
        tpl.cfe = p[q]
        q += 1
    return tpl, q


cdef bint _is_plain(bytes region):
    return len(region) == 0 or region[:2] == PLAIN_MARK


cdef bytes _mode5_iv(MeterId meter, int access_number):
    return meter.address + bytes((access_number,)) * 8


cdef tuple _decrypt_tpl(TransportLayer tpl, bytes data, Py_ssize_t hsize, MeterId meter,
                        AuthLayer afl, bytes afl_message, keys):
    """Decrypt the TPL payload ``data[hsize:]``: ``(plaintext, key)``."""
    cdef int mode = tpl.security_mode
    cdef bytes body = data[hsize:]
    cdef Py_ssize_t blocks = tpl.encrypted_blocks or 0
    cdef Py_ssize_t size
    if mode == 0:
        return body, None
    if mode in IGNORABLE_SECURITY_MODES and tpl.payload_kind == "records":
        # the mode names no encryption: the record decoder applies its rule (plain records
        # decode, flagged, anything else is unsupported)
        tpl.state = "ignored"
        return body, None
    if mode == 13 or (mode not in IMPLEMENTED_MODES and not _is_plain(body)):
        raise UnsupportedError(
            f"security mode {mode} ({security_mode_name(mode)}) is not supported", 0)
    if mode not in IMPLEMENTED_MODES or _is_plain(body):
        tpl.state = "pre-decrypted"
        return body, None
    unit = 8 if mode in (2, 3) else 16
    size = blocks * 16 if blocks else len(body) - len(body) % unit
    if size > len(body):
        # Fewer bytes than announced: decrypt the whole blocks, the incomplete one is lost.
        size = len(body) - len(body) % unit
        tpl.truncated = len(body) - size
        body = body[:size]
        if size == 0:
            raise FrameError(f"the TPL announces {blocks} encrypted blocks and not one "
                             "complete block follows", len(data))
    region = body[:size]
    tail = body[size:]
    if _is_plain(region):
        tpl.state = "pre-decrypted"
        return body, None
    wanted = DesKey if mode in (2, 3) else AesKey
    candidates = [k for k in _candidates(keys, meter) if isinstance(k, wanted)]
    if not candidates:
        raise MissingKeyError(f"mode {mode} encrypted telegram from {meter} and no "
                              f"{'DES' if wanted is DesKey else 'AES'} key for it",
                              hsize, mode)
    if mode == 7:
        return _decrypt_mode7(tpl, region, tail, meter, afl, afl_message, candidates)
    if mode == 5:
        iv = _mode5_iv(meter, tpl.access_number)
    else:
        iv = b"\x00" * 8 if mode == 2 else meter.address
    for key in candidates:
        plain = key.cbc_decrypt(iv, region)
        if plain[:2] == PLAIN_MARK:
            tpl.state = "decrypted"
            return plain + tail, key
    raise DecryptError(f"mode {mode}: decrypted payload does not start with 2F2F with "
                       f"{_tried(candidates)} for {meter}: wrong key", hsize, mode)


cdef tuple _decrypt_mode7(TransportLayer tpl, bytes region, bytes tail, MeterId meter,
                          AuthLayer afl, bytes afl_message, list candidates):
    if afl is None or afl.message_counter is None:
        raise DecodeError("mode 7 telegram without an AFL message counter to derive the key", 0)
    if tpl.kdf != 1:
        raise UnsupportedError(f"mode 7 key derivation function {tpl.kdf} is not supported", 0)
    mcr = afl.message_counter.to_bytes(4, "little")
    mac_failed = False
    for key in candidates:
        kenc, kmac = kdf_a(key, mcr, meter.id_bytes)
        if afl.mac is not None:
            mac = cmac_with(kmac, afl_message)[:len(afl.mac)]
            if mac != afl.mac:
                mac_failed = True
                continue
        plain = kenc.cbc_decrypt(b"\x00" * 16, region)
        if plain[:2] == PLAIN_MARK:
            tpl.state = "decrypted"
            return plain + tail, key
    check = "AFL MAC" if mac_failed else "2F2F check"
    raise DecryptError(f"mode 7: {check} failed with {_tried(candidates)} for {meter}: "
                       "wrong key", 0, 7)


def decode_transport(data, keys=None, link_meter=None, afl=None, afl_message=b"") -> tuple:
    """The transport layer at the start of ``data`` (its CI first), decrypted:
    ``(tpl, payload, meter, key)``.

    ``link_meter`` is the DLL address (wireless) used when there is no long header; wired frames
    pass None and need the long header for the mode 5 IV. ``afl`` and ``afl_message`` (the AFL
    MCL ‖ MCR ‖ ML prefix followed by every byte from the TPL CI on) are needed for mode 7.
    """
    cdef bytes raw = bytes(data)
    if not raw:
        raise DecodeError("no transport layer CI", 0)
    cdef int ci = raw[0]
    if ci not in TPL_LAYOUT:
        raise UnsupportedError(f"CI 0x{ci:02X} is not a transport layer this gateway decodes", 0)
    tpl, hsize = _parse_tpl_header(ci, raw)
    meter = tpl.meter if tpl.meter is not None else link_meter
    if meter is None and tpl.security_mode in (3, 5):
        raise DecodeError(f"mode {tpl.security_mode} needs the meter address for its IV, and "
                          "this frame has no long header", 0)
    if meter is None and tpl.security_mode == 7:
        raise DecodeError("mode 7 needs the meter id for its key derivation, and this frame "
                          "has no long header", 0)
    try:
        payload, key = _decrypt_tpl(tpl, raw, hsize, meter, afl, afl_message, keys)
    except MBusError as error:
        error.meter = meter
        raise
    return tpl, payload, meter, key


# ---------------------------------------------------------------- the whole telegram


def decode_wireless(data, keys=None, str frame_format="auto") -> WirelessTelegram:
    """Strip the CRCs, parse every layer below the application layer and decrypt it."""
    frame, fmt, trailing = strip_crc(data, frame_format)
    return _decode_frame(frame, fmt, trailing, keys)


def decode_stripped(frame, keys=None, str frame_format="stripped", trailing=b""):
    """``decode_wireless`` for a frame that is already CRC-free (``len == L + 1``)."""
    return _decode_frame(bytes(frame), frame_format, bytes(trailing), keys)


cdef WirelessTelegram _decode_frame(bytes frame, str fmt, bytes trailing, keys):
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t n = len(frame)
    if n < DLL_HEADER:
        raise FrameError(f"{n} bytes are too short for a wireless M-Bus header", n)
    cdef WirelessTelegram t = WirelessTelegram.__new__(WirelessTelegram)
    cdef LinkLayer link = LinkLayer.__new__(LinkLayer)
    link.format = fmt
    link.length = p[0]
    link.control = p[1]
    link.meter = _meter_from_wire(p + 2, False)
    link.trailing = trailing
    t.link = link
    t.frame = frame
    t.meter = link.meter
    try:
        _decode_layers(t, frame, keys)
    except MBusError as error:
        if getattr(error, "meter", None) is None:
            error.meter = t.meter
        raise
    return t


cdef _shift(error, Py_ssize_t base):
    """Make the offset of an error raised on a slice count from the start of the frame."""
    if error.offset is not None:
        error.offset += base


cdef _decode_layers(WirelessTelegram t, bytes frame, keys):
    cdef Py_ssize_t pos = DLL_HEADER
    cdef bytes rest = frame[pos:]
    cdef int ci
    if not rest:
        t.ci = -1
        t.payload = b""
        t.payload_kind = "none"
        return
    ci = rest[0]
    if ci in CI_ELL:
        t.ell, rest, t.key = _decode_ell(frame, pos, t.link.meter, keys)
        if not rest:
            t.ci = ci
            t.payload = b""
            t.payload_kind = "none"
            return
        ci = rest[0]
    afl_message = b""
    if ci == CI_AFL:
        try:
            t.afl = _decode_afl(rest)
        except MBusError as error:
            _shift(error, len(frame) - len(rest))
            raise
        rest = rest[2 + t.afl.length:]
        if not rest:
            raise DecodeError("AFL without a transport layer after it", len(frame))
        afl_message = (b"" if t.afl.mcl is None else bytes((t.afl.mcl,)))
        if t.afl.message_counter is not None:
            afl_message += t.afl.message_counter.to_bytes(4, "little")
        if t.afl.message_length is not None:
            afl_message += t.afl.message_length.to_bytes(2, "little")
        afl_message += rest
        ci = rest[0]
    t.ci = ci
    if is_manufacturer_ci(ci):
        t.payload = rest[1:]
        t.payload_kind = "manufacturer"
        return
    if ci not in TPL_LAYOUT:
        raise UnsupportedError(f"CI 0x{ci:02X} is not decoded by this gateway",
                               len(frame) - len(rest))
    try:
        tpl, payload, meter, key = decode_transport(rest, keys, t.link.meter, t.afl, afl_message)
    except MBusError as error:
        _shift(error, len(frame) - len(rest))
        raise
    t.tpl = tpl
    t.meter = meter
    t.payload = payload
    t.payload_kind = tpl.payload_kind
    if key is not None:
        t.key = key
