"""Key codecs of the store: pure functions, big-endian, so LMDB's byte order is the tuple order.

Readings are keyed slot-major ``(slot, meter, seq)``: a reading cycle writes into one fresh key
range (few, densely filled pages per commit: low flash wear), and one meter's readings are found
with one seek per 15-minute slot. Blocks are keyed day-major ``(day, meter)`` for the same
reason: a day's compaction appends at the end of the tree.
"""

from __future__ import annotations

import struct

SLOT_SECONDS = 900
DAY_SECONDS = 86_400
U32_MAX = 0xFFFF_FFFF

_READING = struct.Struct(">IIQ")
_BLOCK = struct.Struct(">II")
_LOG = struct.Struct(">QI")
_U32 = struct.Struct(">I")


def slot_of(received_at: int) -> int:
    """The 15-minute slot a reception time (seconds since the epoch) falls in."""
    return received_at // SLOT_SECONDS


def day_of(received_at: int) -> int:
    """The UTC day number (days since 1970-01-01) of a reception time."""
    return received_at // DAY_SECONDS


def reading_key(slot: int, meter: int, seq: int) -> bytes:
    return _READING.pack(slot, meter, seq)


def unpack_reading_key(key: bytes) -> tuple[int, int, int]:
    """``(slot, meter, seq)``."""
    return _READING.unpack(key)


def block_key(day: int, meter: int) -> bytes:
    return _BLOCK.pack(day, meter)


def unpack_block_key(key: bytes) -> tuple[int, int]:
    """``(day, meter)``."""
    return _BLOCK.unpack(key)


def log_key(time_us: int, seq: int) -> bytes:
    """System log key: microseconds since the epoch and a sequence number (ties, clock steps)."""
    return _LOG.pack(time_us, seq)


def unpack_log_key(key: bytes) -> tuple[int, int]:
    """``(time_us, seq)``."""
    return _LOG.unpack(key)


def id_key(number: int) -> bytes:
    """Meter and series ids (u32)."""
    return _U32.pack(number)


def unpack_id_key(key: bytes) -> int:
    return _U32.unpack(key)[0]


def series_index_key(meter: int, signature: bytes) -> bytes:
    """A meter's record identity (DIF..VIFE bytes) under the meter id: one prefix per meter."""
    return _U32.pack(meter) + signature


def unpack_series_index_key(key: bytes) -> tuple[int, bytes]:
    return _U32.unpack_from(key)[0], bytes(key[4:])


def text_key(name: str) -> bytes:
    """Names (meter identities, settings, users, report ids) as UTF-8."""
    return name.encode()
