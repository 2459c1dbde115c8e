"""Helpers for the tests that start a real gateway on a data directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mbusgw.gateway.store import Store, store_path

T = TypeVar("T")


def seed_settings(data_dir: Path, changes: dict) -> None:
    """Settings as a user would have saved them before the gateway starts."""
    store = Store.open(store_path(data_dir))
    try:
        store.update_settings(changes)
    finally:
        store.close()


def kept(made: list[T], factory: Callable[[Any], T]) -> Callable[[Any], T]:
    """A northbound service factory that also puts each service it makes in ``made``, so a test
    reaches the service the gateway runs."""

    def make(gateway: Any) -> T:
        made.append(factory(gateway))
        return made[-1]

    return make
