"""Errors of the compiled core, importable without the extensions.

Remote-side errors (the meter or the line sent bad bytes) carry ``offset``, the index of the byte
where decoding failed. ``EncodeError`` is the local side: the caller asked for something that
cannot be built. Any other exception escaping ``mbusgw.core`` is a bug.
"""

from __future__ import annotations


class MBusError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset

    def __str__(self) -> str:
        if self.offset is None:
            return self.message
        return f"{self.message} (at byte {self.offset})"

    def __reduce__(self):
        return (type(self), (self.message, self.offset))


class FrameError(MBusError):
    """Bad start or stop byte, inconsistent length fields, truncated frame."""


class ChecksumError(FrameError):
    """The 8-bit sum (wired) or a CRC-16 block (wireless) does not match."""

    def __init__(
        self,
        message: str,
        offset: int | None = None,
        expected: int | None = None,
        actual: int | None = None,
        block: int | None = None,
    ) -> None:
        super().__init__(message, offset)
        self.expected = expected
        self.actual = actual
        self.block = block

    def __reduce__(self):
        return (type(self), (self.message, self.offset, self.expected, self.actual, self.block))


class DecodeError(MBusError):
    """The application layer is malformed: reserved codes, bad BCD, a record past the end."""

    def __init__(
        self, message: str, offset: int | None = None, record_index: int | None = None
    ) -> None:
        super().__init__(message, offset)
        self.record_index = record_index

    def __reduce__(self):
        return (type(self), (self.message, self.offset, self.record_index))


class UnsupportedError(DecodeError):
    """Legal per the standard but not decoded by this gateway (said plainly, never guessed)."""


class LayoutUnknownError(DecodeError):
    """A compact frame whose record layout (format signature) has not been seen yet: a full
    frame of the same meter must arrive first."""

    def __init__(
        self, message: str, offset: int | None = None, signature: int | None = None
    ) -> None:
        super().__init__(message, offset)
        self.signature = signature

    def __reduce__(self):
        return (type(self), (self.message, self.offset, self.signature))


class DecryptError(MBusError):
    """Decryption failed its check (0x2F2F, payload CRC, MAC): almost always a wrong key."""

    def __init__(
        self, message: str, offset: int | None = None, security_mode: int | None = None
    ) -> None:
        super().__init__(message, offset)
        self.security_mode = security_mode

    def __reduce__(self):
        return (type(self), (self.message, self.offset, self.security_mode))


class MissingKeyError(DecryptError):
    """The telegram is encrypted and no key is known for the meter."""


class EncodeError(MBusError, ValueError):
    """The caller asked to build something invalid (address out of range, bad mask)."""
