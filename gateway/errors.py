"""Errors of the trio program. ``ValueError`` subclasses are the caller's fault."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class StoreError(GatewayError):
    """The store could not do what was asked."""


class StoreFull(StoreError):
    """The store reached its size limit and pruning by policy freed nothing more."""


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


class ConfigError(GatewayError, ValueError):
    """A setting or configuration file is invalid; ``path`` names the offending setting/line."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __reduce__(self):
        return (type(self), (self.message, self.path))
