"""``Store.stored_meters``: which of the meters asked about have anything stored, from one look
at the catalog (a page of the meter list asks it for its meters, most never read yet)."""

from __future__ import annotations

from pathlib import Path

import pytest
from storekit import heat_reading, open_store

from mbusgw.gateway.store.catalog import Catalog


def test_stored_meters_keeps_the_order_and_reads_the_catalog_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    try:
        store.put_readings([heat_reading("b", 0), heat_reading("a", 0)])
        refreshes = []
        refresh = Catalog.refresh

        def counted(self: Catalog, txn: object) -> None:
            refreshes.append(1)
            refresh(self, txn)  # type: ignore[arg-type]

        monkeypatch.setattr(Catalog, "refresh", counted)
        asked = ["a", *(f"never{n}" for n in range(50)), "b"]
        assert store.stored_meters(asked) == ["a", "b"]
        assert len(refreshes) <= 1  # not once for each meter never stored
        assert store.stored_meters([]) == []
    finally:
        store.close()
