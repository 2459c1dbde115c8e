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
from mbusgw.core.records import (
    RECORD_DTYPE,
    Header,
    Record,
    Telegram,
    decode,
    decode_application,
)

__all__ = [
    "RECORD_DTYPE",
    "ChecksumError",
    "DecodeError",
    "DecryptError",
    "EncodeError",
    "FrameError",
    "Header",
    "MBusError",
    "MissingKeyError",
    "Record",
    "Telegram",
    "UnsupportedError",
    "decode",
    "decode_application",
]
