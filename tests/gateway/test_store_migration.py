"""Stores and backups written by earlier store formats open (or restore) migrated in place.

``tests/data/store_v1/store.mdb`` was made by the code of that time (see its README); it keeps
its secrets in clear, as format 1 did.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import lmdb
import pytest

from mbusgw.core import decode
from mbusgw.gateway.errors import BackupError, StoreError
from mbusgw.gateway.store import Store, migrations
from mbusgw.gateway.store.backup import HEADER_SIZE, MAGIC, restore_backup
from mbusgw.gateway.store.model import HeaderIdentity
from mbusgw.gateway.store.sealing import KEY_FILE

LATEST_VALUES = 199  # the newest value of every series
DATA = Path(__file__).parent.parent / "data"
FIXTURES = {1: DATA / "store_v1" / "store.mdb", 2: DATA / "store_v2" / "store.mdb"}
FIXTURE = FIXTURES[1]
NEWER = migrations.SCHEMA_VERSION + 1


def old_store(tmp_path: Path, found: int = 1) -> Path:
    path = tmp_path / "store.mdb"
    shutil.copyfile(FIXTURES[found], path)
    return path


def test_there_is_a_fixture_of_every_earlier_format() -> None:
    assert sorted(FIXTURES) == list(range(1, migrations.SCHEMA_VERSION))
    assert {found: stored_format(path) for found, path in FIXTURES.items()} == {1: 1, 2: 2}


def stored_format(path: Path) -> int:
    env = lmdb.open(str(path), subdir=False, readonly=True, max_dbs=20, lock=False)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            return struct.unpack("<I", txn.get(b"schema", db=meta))[0]
    finally:
        env.close()


@pytest.mark.parametrize("found", sorted(FIXTURES))
def test_the_old_store_is_migrated_in_place_and_reads_back(tmp_path: Path, found: int) -> None:
    path = old_store(tmp_path, found)
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
                else:  # format 1: a wireless frame needs its link layer, so no identity
                    wireless += 1  # format 2 stored the one the pipeline read: it stays
                    assert (raw.header is None) == (found == 1)
        assert (wired, wireless) == (32, 3)  # read at start and once more; three heard
        store.write(lambda ctx: None)  # the system log entries go with the next commit
        assert any(f"migrated from format {found} to 3" in e.text for e in store.system_log())
    assert stored_format(path) == migrations.SCHEMA_VERSION == 3
    assert stored_format(path.with_name(f"store.mdb.format-{found}.bak")) == found
    with Store.open(path) as store:  # opened again: nothing more to migrate
        assert store.env.migrated is None
        assert store.problems() == []


def test_a_failing_migration_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    path = old_store(tmp_path)

    def broken(txn: lmdb.Transaction, store: migrations.Opened) -> None:
        migrations.raw_header_identity(txn, store)
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
        txn.put(b"schema", struct.pack("<I", NEWER), db=env.open_db(b"meta", txn=txn))
    env.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer release"):
        Store.open(path)
    assert path.read_bytes() == before
    assert not path.with_name(f"store.mdb.format-{NEWER}.bak").exists()


def test_an_old_store_opened_read_only_asks_for_a_migration(tmp_path: Path) -> None:
    path = old_store(tmp_path)
    with pytest.raises(StoreError, match="migrate it to format 3"):
        Store.open(path, readonly=True)
    assert stored_format(path) == 1


def clear_keys(found: int = 1) -> list[bytes]:
    """The AES keys a fixture holds in clear (formats 1 and 2 had no sealing), as stored."""
    env = lmdb.open(str(FIXTURES[found]), subdir=False, readonly=True, max_dbs=20, lock=False)
    try:
        with env.begin() as txn:
            records = [json.loads(v) for _, v in txn.cursor(db=env.open_db(b"keys", txn=txn))]
    finally:
        env.close()
    found = [r["key"].encode() for r in records if isinstance(r.get("key"), str)]
    assert len(found) == 2  # the two encrypted simulated meters' keys (and the key state)
    return found


@pytest.mark.parametrize("found", sorted(FIXTURES))
def test_the_kept_copy_of_the_old_store_holds_no_secret_in_clear(
    tmp_path: Path, found: int
) -> None:
    path = old_store(tmp_path, found)
    keys = clear_keys(found)
    assert all(key in path.read_bytes() for key in keys)
    with Store.open(path) as store:
        readable = store.records("keys")
    copy = path.with_name(f"store.mdb.format-{found}.bak")
    assert stored_format(copy) == found
    assert [key for key in keys if key in copy.read_bytes()] == []  # not even in a free page
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        KEY_FILE, "store.mdb", "store.mdb-lock", copy.name
    ]  # fmt: skip
    # the copy put back in place (with the key file beside it) migrates again, keys and all
    again = tmp_path / "again"
    again.mkdir(mode=0o700)
    shutil.copyfile(copy, again / "store.mdb")
    shutil.copyfile(tmp_path / KEY_FILE, again / KEY_FILE)
    with Store.open(again / "store.mdb") as store:
        assert store.records("keys") == readable
        assert store.problems() == []


def format_1_backup(tmp_path: Path) -> Path:
    """A backup as the release of store format 1 wrote it (backup format 1: the manifest had no
    ``secrets``; the store's secrets were in clear): the header, then LMDB's compacted copy."""
    env = lmdb.open(str(FIXTURE), subdir=False, readonly=True, max_dbs=20, lock=False)
    data = tmp_path / "data.mdb"
    try:
        env.copy(str(data), compact=True)
        with env.begin() as txn:
            meta = env.open_db(b"meta", txn=txn)
            counts = {
                name: txn.stat(env.open_db(name.encode(), txn=txn))["entries"]
                for name in ("meters", "series")
            } | {
                name: struct.unpack("<Q", txn.get(f"count_{name}".encode(), db=meta))[0]
                for name in ("readings", "values")
            }
    finally:
        env.close()
    body = data.read_bytes()
    manifest = {
        "format": 1, "created": "2026-12-06T12:00:00+00:00", "schema": 1,
        "data_bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(), **counts,
    }  # fmt: skip
    header = MAGIC + json.dumps(manifest, sort_keys=True).encode() + b"\n"
    backup = tmp_path / "format-1.backup"
    backup.write_bytes(header.ljust(HEADER_SIZE, b"\0") + body)
    return backup


def test_a_backup_of_store_format_1_is_restored_migrated(tmp_path: Path) -> None:
    backup = format_1_backup(tmp_path)
    live = tmp_path / "live" / "store.mdb"
    info = restore_backup(backup, live, full_check=True)
    assert (info.schema, info.readings, info.values) == (1, 35, 371)
    assert stored_format(live) == migrations.SCHEMA_VERSION
    assert [key for key in clear_keys() if key in live.read_bytes()] == []  # sealed on the way
    assert sorted(p.name for p in live.parent.iterdir()) == [KEY_FILE, "store.mdb"]
    with Store.open(live) as store:
        assert store.env.migrated is None  # the restored store is of this format already
        assert store.problems() == []
        assert (store.stats().readings, store.stats().values) == (35, 371)
        assert len(store.latest()) == LATEST_VALUES
        assert len([r for r in store.records("keys").values() if r.get("key")]) == 2
        raw = [t for meter in store.meters() for t in store.raw_telegrams(meter.name)]
        assert sum(t.header is not None for t in raw) == 32


def test_a_backup_of_a_newer_store_format_is_refused_before_anything_changes(
    tmp_path: Path,
) -> None:
    backup = format_1_backup(tmp_path)
    data = bytearray(backup.read_bytes())
    header = data[:HEADER_SIZE].rstrip(b"\0")
    newer = header.replace(b'"schema": 1', f'"schema": {NEWER}'.encode())
    backup.write_bytes(newer.ljust(HEADER_SIZE, b"\0") + data[HEADER_SIZE:])
    live = tmp_path / "live" / "store.mdb"
    with Store.open(live) as store:
        store.update_settings({"modbus": {"port": 0}})
    before = live.read_bytes()
    with pytest.raises(BackupError, match=f"store format {NEWER}, written by a newer release"):
        restore_backup(backup, live)
    assert live.read_bytes() == before
    assert sorted(p.name for p in live.parent.iterdir()) == [
        KEY_FILE,
        "store.mdb",
        "store.mdb-lock",
    ]
