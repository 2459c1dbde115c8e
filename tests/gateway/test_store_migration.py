"""A store written before the format version 2 opens after it, migrated in place.

``tests/data/store_v1/store.mdb`` was made by the code of that time (see its README).
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import lmdb
import pytest

from mbusgw.core import decode
from mbusgw.gateway.errors import StoreError
from mbusgw.gateway.store import Store, migrations
from mbusgw.gateway.store.model import HeaderIdentity

LATEST_VALUES = 199  # the newest value of every series
FIXTURE = Path(__file__).parent.parent / "data" / "store_v1" / "store.mdb"


def old_store(tmp_path: Path) -> Path:
    path = tmp_path / "store.mdb"
    shutil.copyfile(FIXTURE, path)
    return path


def stored_format(path: Path) -> int:
    env = lmdb.open(str(path), subdir=False, readonly=True, max_dbs=20, lock=False)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            return struct.unpack("<I", txn.get(b"schema", db=meta))[0]
    finally:
        env.close()


def test_the_old_store_is_migrated_in_place_and_reads_back(tmp_path: Path) -> None:
    path = old_store(tmp_path)
    with Store.open(path) as store:
        assert store.problems() == []
        stats = store.stats()
        assert (stats.meters, stats.readings, stats.values) == (19, 35, 371)
        assert store.settings.modbus.port == 0
        assert store.settings.reading.not_seen_after_min == 90
        assert len(store.records("installation")) == 20
        assert len(store.records("keys")) == 3
        assert sum(len(store.meter_log(meter.name)) for meter in store.meters()) == 35
        assert len(store.latest()) == LATEST_VALUES
        wired = wireless = 0
        for meter in store.meters():
            for raw in store.raw_telegrams(meter.name):
                if raw.frames[0][:1] == b"\x68":  # a wired long frame
                    wired += 1
                    assert raw.header == HeaderIdentity.of(decode(raw.frames[0]).header)
                else:  # a wireless frame needs its link layer: no identity, as before
                    wireless += 1
                    assert raw.header is None
        assert (wired, wireless) == (32, 3)  # read at start and once more; three heard
        store.write(lambda ctx: None)  # the system log entries go with the next commit
        assert any("migrated from format 1" in e.text for e in store.system_log())
    assert stored_format(path) == migrations.SCHEMA_VERSION == 2
    assert stored_format(path.with_name("store.mdb.format-1.bak")) == 1
    with Store.open(path) as store:  # opened again: nothing more to migrate
        assert store.env.migrated is None
        assert store.problems() == []


def test_a_failing_migration_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    path = old_store(tmp_path)

    def broken(txn: lmdb.Transaction, db: migrations.Tables) -> None:
        migrations.raw_header_identity(txn, db)
        raise RuntimeError("power cut")

    monkeypatch.setattr(migrations, "STEPS", (broken,))
    with pytest.raises(RuntimeError, match="power cut"):
        Store.open(path)
    assert stored_format(path) == 1
    monkeypatch.undo()
    with Store.open(path) as store:  # the next start migrates it
        assert store.problems() == []
        assert store.env.migrated is not None


def test_a_store_of_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    path = old_store(tmp_path)
    env = lmdb.open(str(path), subdir=False, max_dbs=20)
    with env.begin(write=True) as txn:
        txn.put(b"schema", struct.pack("<I", 3), db=env.open_db(b"meta", txn=txn))
    env.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer release"):
        Store.open(path)
    assert path.read_bytes() == before
    assert not path.with_name("store.mdb.format-3.bak").exists()


def test_an_old_store_opened_read_only_asks_for_a_migration(tmp_path: Path) -> None:
    path = old_store(tmp_path)
    with pytest.raises(StoreError, match="migrate it to format 2"):
        Store.open(path, readonly=True)
    assert stored_format(path) == 1
