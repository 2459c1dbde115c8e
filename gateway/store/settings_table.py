"""The gateway's ``Settings`` (``gateway/settings.py``) in the store's ``settings`` table.

One JSON record per top-level field (``log``, ``store``, ``reading``, ``capacity`` ...). A change
is merged into the stored settings and validated inside the write transaction, so concurrent
changes never undo each other and a rejected change writes nothing. Fields the model marks
``secret`` are stored sealed (``gateway/store/sealing.py``) and opened on reading.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import Field, fields, is_dataclass
from typing import Any, get_type_hints

import lmdb

from mbusgw.gateway.settings import ConfigError, Settings, masked_secret, settings_from_dict
from mbusgw.gateway.store.context import WriteContext
from mbusgw.gateway.store.env import StoreEnv
from mbusgw.gateway.store.sealing import is_sealed

TABLE = "settings"


def read_settings(txn: lmdb.Transaction, env: StoreEnv) -> Settings:
    return settings_from_stored(stored_settings(txn, env))


def stored_settings(txn: lmdb.Transaction, env: StoreEnv) -> dict[str, Any]:
    """The settings records as stored, secrets opened."""
    return {
        key.decode(): env.sealer.open_tree(json.loads(raw), TABLE)
        for key, raw in txn.cursor(db=env.db.settings)
    }


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


def sealed_settings(settings: Settings, env: StoreEnv) -> dict[str, Any]:
    """The settings records as they are stored: every set secret sealed."""
    seal = env.sealer.seal
    return _plain(settings, lambda text: seal(text, TABLE) if text else text, lambda f: True)


def write_settings(txn: lmdb.Transaction, env: StoreEnv, settings: Settings) -> None:
    for name, value in sealed_settings(settings, env).items():
        txn.put(name.encode(), json.dumps(value).encode(), db=env.db.settings)


def has_clear_secrets(stored: Any, sealed: Any) -> bool:
    """Whether ``stored`` (settings as found on disk) holds in clear a value that ``sealed``
    (the same settings as they would be written) holds sealed."""
    if is_sealed(sealed):
        return isinstance(stored, str) and bool(stored) and not is_sealed(stored)
    if isinstance(sealed, dict) and isinstance(stored, dict):
        return any(has_clear_secrets(stored.get(key), value) for key, value in sealed.items())
    if isinstance(sealed, list) and isinstance(stored, list):
        return any(has_clear_secrets(a, b) for a, b in zip(stored, sealed, strict=False))
    return False


def update_settings(ctx: WriteContext, changes: dict[str, Any]) -> Settings:
    """Merge ``changes`` (nested, only what changes) into the stored settings and store them."""
    current = read_settings(ctx.txn, ctx.env)
    updated = current.updated(changes)  # ConfigError: this operation fails, nothing is written
    write_settings(ctx.txn, ctx.env, updated)
    ctx.settings_changed = True
    return updated


def portable(value: Any, *, secrets: bool = True) -> Any:
    """A settings dataclass as a dict without its device-specific fields (configuration files);
    tables of named entries (per-meter settings, reports) are followed into. Without
    ``secrets``, a set password is written as ``SECRET_MASK`` ("keep the stored one")."""
    return _plain(
        value,
        (lambda text: text) if secrets else masked_secret,
        lambda f: not f.metadata.get("device_specific"),
    )


def _plain(value: Any, secret: Callable[[str], Any], keep: Callable[[Field], bool]) -> Any:
    """A settings dataclass as plain data: fields that ``keep`` accepts, secret fields passed
    through ``secret``; tables of named entries and lists are followed into."""
    if isinstance(value, dict):
        return {key: _plain(entry, secret, keep) for key, entry in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(entry, secret, keep) for entry in value]
    if not is_dataclass(value):
        return value
    return {
        f.name: (
            secret(getattr(value, f.name))
            if f.metadata.get("secret")
            else _plain(getattr(value, f.name), secret, keep)
        )
        for f in fields(value)
        if keep(f)
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
