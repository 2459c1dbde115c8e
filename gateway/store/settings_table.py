"""The gateway's ``Settings`` (``gateway/settings.py``) in the store's ``settings`` table.

One JSON record per top-level field (``log``, ``store``, ``reading``, ``capacity`` ...). A change
is merged into the stored settings and validated inside the write transaction, so concurrent
changes never undo each other and a rejected change writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import Any, get_type_hints

import lmdb

from mbusgw.gateway.settings import ConfigError, Settings, masked_secret, settings_from_dict
from mbusgw.gateway.store.context import WriteContext


def read_settings(txn: lmdb.Transaction, db: lmdb._Database) -> Settings:
    stored = {key.decode(): json.loads(raw) for key, raw in txn.cursor(db=db)}
    return settings_from_stored(stored)


def settings_from_stored(stored: dict[str, Any]) -> Settings:
    """Stored settings; what this version does not know or accept falls back to the default
    (a gateway must start after an upgrade that dropped or narrowed a setting)."""
    for _ in range(8):
        try:
            return settings_from_dict(stored)
        except ConfigError as error:
            stored = _without(stored, error.errors)
    return Settings()


def _without(document: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    pruned = json.loads(json.dumps(document))
    for path in paths:
        *parents, leaf = path.split(".")
        node = pruned
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return pruned


def write_settings(txn: lmdb.Transaction, db: lmdb._Database, settings: Settings) -> None:
    for name, value in settings.to_dict().items():
        txn.put(name.encode(), json.dumps(value).encode(), db=db)


def update_settings(ctx: WriteContext, changes: dict[str, Any]) -> Settings:
    """Merge ``changes`` (nested, only what changes) into the stored settings and store them."""
    current = read_settings(ctx.txn, ctx.db.settings)
    updated = current.updated(changes)  # ConfigError: this operation fails, nothing is written
    write_settings(ctx.txn, ctx.db.settings, updated)
    ctx.settings_changed = True
    return updated


def portable(value: Any, *, secrets: bool = True) -> Any:
    """A settings dataclass as a dict without its device-specific fields (configuration files);
    tables of named entries (per-meter settings, reports) are followed into. Without
    ``secrets``, a set password is written as ``SECRET_MASK`` ("keep the stored one")."""
    if isinstance(value, dict):
        return {key: portable(entry, secrets=secrets) for key, entry in value.items()}
    if not is_dataclass(value):
        return value
    return {
        f.name: (
            masked_secret(getattr(value, f.name))
            if f.metadata.get("secret") and not secrets
            else portable(getattr(value, f.name), secrets=secrets)
        )
        for f in fields(value)
        if not f.metadata.get("device_specific")
    }


def device_specific_paths(document: Any, cls: type = Settings, prefix: str = "") -> list[str]:
    """Dotted paths in ``document`` that name device-specific settings."""
    if not isinstance(document, dict):
        return []
    hints = get_type_hints(cls)
    found = []
    for f in fields(cls):
        if f.name not in document:
            continue
        if f.metadata.get("device_specific"):
            found.append(prefix + f.name)
        elif is_dataclass(hints[f.name]):
            found += device_specific_paths(document[f.name], hints[f.name], f"{prefix}{f.name}.")
    return found
