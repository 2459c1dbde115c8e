"""Restart, factory reset and restore between two runs of the gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbusgw.gateway.lifecycle import AfterStop, apply_after_stop
from mbusgw.gateway.store import SeriesSpec, Store, StoredReading, store_path
from mbusgw.gateway.store.backup import create_backup
from mbusgw.gateway.store.sealing import KEY_FILE

ENERGY = SeriesSpec(bytes.fromhex("0C06"), "energy", "kWh")


def store_with(data_dir: Path, value: int) -> None:
    with Store.open(store_path(data_dir)) as store:
        store.put_readings([StoredReading.of("12345678", 1_700_000_000 + value, [(ENERGY, value)])])


def values(data_dir: Path) -> list[object]:
    with Store.open(store_path(data_dir)) as store:
        return store.latest().values()


def test_factory_reset_removes_store_and_certificates(tmp_path: Path) -> None:
    store_with(tmp_path, 1)
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "server.key").write_text("secret")
    assert (tmp_path / KEY_FILE).exists()
    apply_after_stop(AfterStop("factory_reset"), tmp_path)
    assert not store_path(tmp_path).exists()
    assert not (tmp_path / KEY_FILE).exists()  # the secrets' key goes with them
    assert not (tmp_path / "tls").exists()
    assert values(tmp_path) == []


def test_restore_replaces_the_store_and_removes_the_upload(tmp_path: Path) -> None:
    store_with(tmp_path, 1)
    backup = tmp_path / "upload.backup"
    with Store.open(store_path(tmp_path)) as store:
        create_backup(store.env, backup, 1_700_000_100)
    store_with(tmp_path, 2)
    assert values(tmp_path) == [2]
    apply_after_stop(AfterStop("restore", backup), tmp_path)
    assert values(tmp_path) == [1]
    assert not backup.exists()


def test_requests_are_checked() -> None:
    with pytest.raises(ValueError):
        AfterStop("explode")
    with pytest.raises(ValueError):
        AfterStop("restore")
    assert apply_after_stop(AfterStop("restart"), Path("/nonexistent")) == "restart"
