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
