"""The compiled core: M-Bus framing, checksums and decoding. Bytes in, objects out; no I/O."""

from mbusgw.core.errors import (
    ChecksumError,
    DecodeError,
    DecryptError,
    EncodeError,
    FrameError,
    MBusError,
    MissingKeyError,
    UnsupportedError,
)

__all__ = [
    "ChecksumError",
    "DecodeError",
    "DecryptError",
    "EncodeError",
    "FrameError",
    "MBusError",
    "MissingKeyError",
    "UnsupportedError",
]
