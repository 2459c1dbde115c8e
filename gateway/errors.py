"""Errors of the gateway program (settings errors are ``settings.ConfigError``).

``ValueError`` subclasses are the caller's fault. ``BusError`` and its subclasses are what an
exchange on a wired line can end in; they carry the address they were about and how many
attempts were made, so the caller can log the reading as failed without guessing.
"""

from __future__ import annotations

# The longest error text the gateway makes, in bytes of UTF-8 (the store keeps a reading's
# error text whole, and a meter's garbled answer quoted in full could run to kilobytes).
MAX_ERROR_TEXT = 1000
_ELLIPSIS = "…"


def describe(exc: BaseException, limit: int = MAX_ERROR_TEXT) -> str:
    """The one text an error is shown and stored as: ``Type: message`` of the first real error
    inside any exception groups, at most ``limit`` bytes (see ``bounded``)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return bounded(f"{type(exc).__name__}: {exc}", limit)


def bounded(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, ending in an ellipsis and the length
    of the whole text when it had to be cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    suffix = f"{_ELLIPSIS} ({len(text)} characters)"
    head = data[: max(0, limit - len(suffix.encode()))].decode(errors="ignore")
    return head + suffix


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class BusError(GatewayError):
    """An exchange on an M-Bus line failed."""


class NoResponse(BusError):
    """No meter answered within the response timeout, on every attempt."""

    def __init__(self, address: int | str, attempts: int) -> None:
        super().__init__(f"no response from {address} after {attempts} attempt(s)")
        self.address = address
        self.attempts = attempts

    def __reduce__(self):
        return (type(self), (self.address, self.attempts))


class Collision(BusError):
    """The answer was garbled on every attempt: several meters answered at once, or the line
    corrupts bytes (noise, a bad converter)."""

    def __init__(self, address: int | str, attempts: int, detail: str = "") -> None:
        message = f"garbled answer from {address} after {attempts} attempt(s)"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.address = address
        self.attempts = attempts
        self.detail = detail

    def __reduce__(self):
        return (type(self), (self.address, self.attempts, self.detail))


class LineNoisy(Collision):
    """The line did not go quiet within an attempt's bound (noise that never stops, a flooding
    converter, a meter that keeps sending): the read was given up so the next meter is read."""

    def __init__(self, address: int | str, attempts: int, detail: str = "") -> None:
        BusError.__init__(self, f"line noisy at {address}: {detail}" if detail else str(address))
        self.address = address
        self.attempts = attempts
        self.detail = detail


class LineDown(BusError):
    """The serial port or the TCP connection to the converter is not usable; ``__cause__``
    holds the transport's error."""


class StoreError(GatewayError):
    """The store could not do what was asked."""


class StoreFull(StoreError):
    """The store reached its size limit and pruning by policy freed nothing more."""


class DiskFull(StoreError):
    """The file system of the store has no room left (or too little to open it safely)."""


# the exit status of a command stopped by a full disk (docs/store.md, "Disk full")
DISK_FULL_STATUS = 3


class StoreClosed(StoreError):
    """The store (or its writer) is closed; the request was not carried out."""


class NotFound(StoreError, LookupError):
    """No such meter, series or record in the store."""


class StoreCorrupt(StoreError):
    """Stored data failed a consistency check."""


class StoreLocked(StoreError):
    """Another process holds the store exclusively (for example a running gateway)."""


class InvalidReading(StoreError, ValueError):
    """A reading handed to the store is malformed; nothing of it was stored."""


class BackupError(StoreError):
    """A backup file is missing, truncated, corrupt or from an incompatible version."""


class ReportError(GatewayError):
    """A push report could not be made or delivered."""


class DeliveryError(ReportError):
    """The receiver was unreachable or did not accept the report; the values stay pending."""


class UnknownReport(ReportError, LookupError):
    """No report of that name is configured (or it is of another kind)."""
