"""Secrets at rest: a private data directory, secrets sealed in the store under a key file of
their own, older stores sealed by their migration, and backups that carry secrets only when
asked."""

from __future__ import annotations

import json
import shutil
import stat
import struct
from pathlib import Path

import lmdb
import pytest
import trio
from storekit import heat_reading
from test_key_records import with_store
from test_keys import ELS, GOOD, OTHER

from mbusgw.gateway.cli import main
from mbusgw.gateway.errors import BackupError, StoreError
from mbusgw.gateway.store import Store, store_path
from mbusgw.gateway.store.backup import create_backup, read_backup_info, restore_backup
from mbusgw.gateway.store.configfile import export_config
from mbusgw.gateway.store.sealing import KEY_FILE

SMTP_PASSWORD = "smtp-Secret-41"
FTP_PASSWORD = "ftp-Secret-42"
HTTP_PASSWORD = "http-Secret-43"
REPORT_PASSWORD = "report-Secret-44"
PASSWORDS = (SMTP_PASSWORD, FTP_PASSWORD, HTTP_PASSWORD, REPORT_PASSWORD)
SECRET_SETTINGS = {
    "reports": {
        "email": {"host": "smtp.example", "username": "gw", "password": SMTP_PASSWORD},
        "ftp": {"host": "ftp.example", "username": "gw", "password": FTP_PASSWORD},
        "http": {"uri": "https://in.example/r", "auth": "basic", "username": "gw"}
        | {"password": HTTP_PASSWORD},
        "reports": {
            "daily": {"template": 3101, "http": {"uri": "https://other.example/r"}
            | {"auth": "basic", "username": "x", "password": REPORT_PASSWORD}}
        },
    }
}  # fmt: skip
PASSPHRASE = "correct horse battery"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def secrets_in(data: bytes) -> list[str]:
    """Which of the test's secrets ``data`` holds in clear (keys in either case, as text)."""
    found = [p for p in PASSWORDS if p.encode() in data]
    found += [k for k in (GOOD, OTHER) if k.encode() in data.upper()]
    return found


def raw_tables(path: Path) -> dict[str, list[bytes]]:
    """Every value of the settings, keys and users tables, read with LMDB itself."""
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, max_dbs=32)
    try:
        tables = {}
        for name in ("settings", "keys", "users"):
            db = env.open_db(name.encode(), create=False)
            with env.begin(db=db) as txn:
                tables[name] = [bytes(value) for _, value in txn.cursor()]
        return tables
    finally:
        env.close()


async def fill_with_secrets(data_dir: Path) -> None:
    async def work(store, writer, keys, problems) -> None:
        await writer.update_settings(SECRET_SETTINGS)
        await keys.add(GOOD, address="12345678")
        await keys.link(ELS, OTHER)
        await writer.put_record("users", "#session-secret", {"hex": "ab" * 32})
        await writer.put_readings([heat_reading("a", i) for i in range(20)])
        await writer.flush()

    with trio.fail_after(30):
        await with_store(data_dir, work)


def assert_secrets_readable(store: Store) -> None:
    reports = store.stored_settings().reports
    assert reports.email.password == SMTP_PASSWORD
    assert reports.ftp.password == FTP_PASSWORD
    assert reports.http.password == HTTP_PASSWORD
    assert reports.reports["daily"].http.password == REPORT_PASSWORD
    keys = {r["key"] for r in store.records("keys").values() if "key" in r}
    assert keys == {GOOD, OTHER}
    assert store.record("users", "#session-secret") == {"hex": "ab" * 32}


def test_the_data_directory_and_its_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    Store.open(store_path(data_dir)).close()
    assert mode(data_dir) == 0o700
    for name in ("store.mdb", "store.mdb-lock", KEY_FILE):
        assert mode(data_dir / name) == 0o600, name
    # a data directory made by an older version is tightened on opening
    data_dir.chmod(0o755)
    for name in ("store.mdb", "store.mdb-lock", KEY_FILE):
        (data_dir / name).chmod(0o644)
    store = Store.open(store_path(data_dir))
    assert mode(data_dir) == 0o700
    assert all(mode(data_dir / n) == 0o600 for n in ("store.mdb", "store.mdb-lock", KEY_FILE))
    (data_dir / "export.toml.part").write_text("left over")
    (data_dir / "export.toml.part").chmod(0o644)
    export_config(store.settings, data_dir / "export.toml", 0, secrets=True)
    create_backup(store.env, tmp_path / "b.backup", 0)
    store.close()
    assert mode(data_dir / "export.toml") == 0o600
    assert mode(tmp_path / "b.backup") == 0o600


def test_a_copy_of_the_store_alone_reveals_no_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    trio.run(fill_with_secrets, data_dir)
    stolen = tmp_path / "stolen"
    stolen.mkdir()
    shutil.copy(store_path(data_dir), stolen / "store.mdb")
    assert secrets_in((stolen / "store.mdb").read_bytes()) == []
    tables = raw_tables(stolen / "store.mdb")
    assert not any(secrets_in(value) for values in tables.values() for value in values)
    assert b"sealed:v1:" in b"".join(tables["keys"]) and b"ab" * 32 not in b"".join(tables["users"])
    with Store.open(stolen / "store.mdb", readonly=True) as copy:
        assert {r.get("key") for r in copy.records("keys").values()} == {None}
        assert copy.stored_settings().reports.email.password == ""
        assert copy.stored_settings().reports.email.host == "smtp.example"
        assert copy.stats().readings == 20  # everything else reads as before
    with Store.open(stolen / "store.mdb") as copy:  # with a key file of its own
        assert mode(stolen / KEY_FILE) == 0o600
        # 8: the seven the test stores and the SNMP community (a secret, "public" by default)
        assert "8 stored secrets do not open with the key file" in copy.log.take()[0].text
    with Store.open(store_path(data_dir), readonly=True) as store:
        assert_secrets_readable(store)


def make_older_store(data_dir: Path) -> None:
    """A store as a release before sealing wrote it: store format 2, secrets in clear, and no
    key file."""
    trio.run(fill_with_secrets, data_dir)
    with Store.open(store_path(data_dir), readonly=True) as store:
        settings = {k: json.dumps(v) for k, v in store.stored_settings().to_dict().items()}
        keys = store.records("keys")
    with Store.open(store_path(data_dir)) as store:

        def clear(ctx) -> None:
            for name, value in settings.items():
                ctx.txn.put(name.encode(), value.encode(), db=ctx.db.settings)
            for name, record in keys.items():
                ctx.txn.put(name.encode(), json.dumps(record).encode(), db=ctx.db.keys)
            ctx.txn.put(b"#session-secret", b'{"hex": "' + b"ab" * 32 + b'"}', db=ctx.db.users)
            ctx.txn.put(b"schema", struct.pack("<I", 2), db=ctx.db.meta)

        store.write(clear)
    (data_dir / KEY_FILE).unlink()
    assert len(secrets_in(store_path(data_dir).read_bytes())) == 6


def test_secrets_an_older_store_holds_in_clear_are_sealed_by_its_migration(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    make_older_store(data_dir)

    with Store.open(store_path(data_dir)) as store:
        assert_secrets_readable(store)
        assert [e.text for e in store.log.take()] == [
            "store migrated from format 2 to 3; the old store (its secrets sealed) is kept as "
            "store.mdb.format-2.bak"
        ]
    assert mode(data_dir / KEY_FILE) == 0o600
    for copy in (store_path(data_dir), data_dir / "store.mdb.format-2.bak"):
        tables = raw_tables(copy)
        assert not any(secrets_in(value) for values in tables.values() for value in values)
    # the kept copy is compacted: not even a free page of it holds one
    assert secrets_in((data_dir / "store.mdb.format-2.bak").read_bytes()) == []
    with Store.open(store_path(data_dir)) as store:  # nothing left to do
        assert store.log.take() == []


def test_a_backup_carries_secrets_only_when_asked(tmp_path: Path) -> None:
    source = tmp_path / "source"
    trio.run(fill_with_secrets, source)
    plain, sealed = tmp_path / "plain.backup", tmp_path / "sealed.backup"
    with Store.open(store_path(source), readonly=True) as store:
        create_backup(store.env, plain, 0)
        create_backup(store.env, sealed, 0, passphrase=PASSPHRASE)
    assert read_backup_info(plain).secrets is None
    assert read_backup_info(sealed).secrets["kdf"] == "scrypt"
    for backup in (plain, sealed):
        assert secrets_in(backup.read_bytes()) == []

    # without secrets: the settings keep everything but the passwords, the keys stay behind
    target = tmp_path / "target"
    restore_backup(plain, store_path(target))
    with Store.open(store_path(target)) as store:
        reports = store.stored_settings().reports
        assert (reports.email.host, reports.email.password) == ("smtp.example", "")
        assert reports.reports["daily"].http.password == ""
        assert [name for name in store.records("keys")] == ["state"]
        assert store.record("users", "#session-secret") is None
        assert store.stats().readings == 20

    # with secrets: the passphrase is needed, a wrong one changes nothing
    other = tmp_path / "other"
    with Store.open(store_path(other)) as store:
        store.put_readings([heat_reading("other", 0)])
    before = store_path(other).read_bytes()
    key_before = (other / KEY_FILE).read_bytes()
    with pytest.raises(BackupError, match="give it"):
        restore_backup(sealed, store_path(other))
    with pytest.raises(BackupError, match="wrong passphrase.*nothing was changed"):
        restore_backup(sealed, store_path(other), passphrase="not the passphrase")
    assert store_path(other).read_bytes() == before
    assert sorted(p.name for p in other.iterdir()) == [KEY_FILE, "store.mdb", "store.mdb-lock"]
    restore_backup(sealed, store_path(other), passphrase=PASSPHRASE)
    assert (other / KEY_FILE).read_bytes() == key_before  # sealed anew under this gateway's key
    with Store.open(store_path(other)) as store:
        assert_secrets_readable(store)
        assert [m.name for m in store.meters()] == ["a"]
    tables = raw_tables(store_path(other))
    assert not any(secrets_in(value) for values in tables.values() for value in values)


def test_an_older_store_is_backed_up_once_it_is_migrated(tmp_path: Path) -> None:
    """Read-only (the command line), a store of format 2 is refused before this version opened
    it for writing: its secrets are sealed by the migration, never by a backup of it."""
    data_dir = tmp_path / "data"
    make_older_store(data_dir)
    plain, sealed = tmp_path / "plain.backup", tmp_path / "sealed.backup"
    with pytest.raises(StoreError, match="start the gateway once"):
        Store.open(store_path(data_dir), readonly=True)
    with Store.open(store_path(data_dir)):
        pass
    with Store.open(store_path(data_dir), readonly=True) as store:
        create_backup(store.env, plain, 0)
        create_backup(store.env, sealed, 0, passphrase=PASSPHRASE)
    assert secrets_in(plain.read_bytes()) == [] and secrets_in(sealed.read_bytes()) == []
    restore_backup(sealed, store_path(tmp_path / "restored"), passphrase=PASSPHRASE)
    with Store.open(store_path(tmp_path / "restored"), readonly=True) as store:
        assert_secrets_readable(store)


def test_the_commands_seal_backups_and_export_privately(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    data_dir = tmp_path / "data"
    trio.run(fill_with_secrets, data_dir)
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    exported = tmp_path / "settings.toml"
    backup = tmp_path / "gw.backup"
    common = ("--data-dir", str(data_dir))
    assert main(["config", "export", str(exported), "--with-passwords", *common]) == 0
    assert mode(exported) == 0o600 and SMTP_PASSWORD in exported.read_text()
    assert main(["backup", str(backup), "--with-secrets", "--passphrase-file",
                 str(passphrase_file), *common]) == 0  # fmt: skip
    assert "secrets sealed with the passphrase" in capsys.readouterr().out
    assert mode(backup) == 0o600 and secrets_in(backup.read_bytes()) == []

    restored = tmp_path / "restored"
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "wrong passphrase!")
    assert main(["restore", str(backup), "--data-dir", str(restored)]) == 1
    assert "wrong passphrase" in capsys.readouterr().err
    assert not store_path(restored).exists()
    monkeypatch.setattr("getpass.getpass", lambda prompt="": PASSPHRASE)
    assert main(["restore", str(backup), "--data-dir", str(restored)]) == 0
    with Store.open(store_path(restored), readonly=True) as store:
        assert_secrets_readable(store)
