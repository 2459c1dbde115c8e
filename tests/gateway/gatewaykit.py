"""Helpers for the tests that start a real gateway on a data directory."""

from __future__ import annotations

from pathlib import Path

from mbusgw.gateway.store import Store, store_path


def seed_settings(data_dir: Path, changes: dict) -> None:
    """Settings as a user would have saved them before the gateway starts."""
    store = Store.open(store_path(data_dir))
    try:
        store.update_settings(changes)
    finally:
        store.close()
