"""The raw telegram record: when it arrived, what its header said, and the frames as received.

Store format 2 keeps the header identity (identification, manufacturer, version, medium, access
number, status) next to the frames, taken from the telegram the pipeline decoded, so no service
decodes a stored telegram again to learn who sent it. Layout::

    i64 received_at · u8 fields present · 8s id · 3s manufacturer · u8 version · u8 medium
    · u8 access number · u8 status · (u16 length · frame)*

Format 1 had no identity block (``first_frame_v1``, ``with_identity_v1``: for the migration).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from mbusgw.gateway.store.model import HEADER_FIELDS, HeaderIdentity

_RAW_HEAD = struct.Struct("<q")
_IDENTITY = struct.Struct("<B8s3sBBBB")
_FRAME_LENGTH = struct.Struct("<H")


def encode_raw(received_at: int, frames: Sequence[bytes], header: HeaderIdentity | None) -> bytes:
    parts = [_RAW_HEAD.pack(received_at), encode_identity(header)]
    for frame in frames:
        parts += (_FRAME_LENGTH.pack(len(frame)), bytes(frame))
    return b"".join(parts)


def decode_raw(value: bytes) -> tuple[int, HeaderIdentity | None, tuple[bytes, ...]]:
    """``(received_at, header identity, frames)`` of a raw telegram record."""
    (received_at,) = _RAW_HEAD.unpack_from(value)
    if len(value) < _RAW_HEAD.size + _IDENTITY.size:
        raise ValueError("raw telegram record is truncated")
    header = _decode_identity(value[_RAW_HEAD.size : _RAW_HEAD.size + _IDENTITY.size])
    return received_at, header, _frames(value, _RAW_HEAD.size + _IDENTITY.size)


def first_frame_v1(value: bytes) -> bytes | None:
    """The first frame of a format-1 record (it had no identity block); None if it has none."""
    if len(value) < _RAW_HEAD.size + _FRAME_LENGTH.size:
        return None
    (length,) = _FRAME_LENGTH.unpack_from(value, _RAW_HEAD.size)
    start = _RAW_HEAD.size + _FRAME_LENGTH.size
    return value[start : start + length]


def with_identity_v1(value: bytes, identity: bytes) -> bytes:
    """A format-1 record in today's layout: the identity block (``encode_identity``) goes
    between the reception time and the frames, which stay the same bytes."""
    return value[: _RAW_HEAD.size] + identity + value[_RAW_HEAD.size :]


def _frames(value: bytes, pos: int) -> tuple[bytes, ...]:
    frames = []
    while pos < len(value):
        (length,) = _FRAME_LENGTH.unpack_from(value, pos)
        pos += _FRAME_LENGTH.size
        if pos + length > len(value):
            raise ValueError("raw telegram record is truncated")
        frames.append(value[pos : pos + length])
        pos += length
    return tuple(frames)


def encode_identity(header: HeaderIdentity | None) -> bytes:
    if header is None:
        return bytes(_IDENTITY.size)
    values = [getattr(header, name) for name in HEADER_FIELDS]
    present = sum(1 << i for i, value in enumerate(values) if value is not None)
    text_id, manufacturer, *numbers = values
    return _IDENTITY.pack(
        present | 0x80,  # bit 7: a header was there (its fields may all be absent)
        (text_id or "").encode("ascii"),
        (manufacturer or "").encode("ascii"),
        *(number or 0 for number in numbers),
    )


def _decode_identity(data: bytes) -> HeaderIdentity | None:
    present, text_id, manufacturer, *numbers = _IDENTITY.unpack(data)
    if not present & 0x80:
        return None
    values = [text_id.rstrip(b"\0").decode("ascii"), manufacturer.decode("ascii"), *numbers]
    return HeaderIdentity(
        *(value if present & (1 << i) else None for i, value in enumerate(values))
    )
