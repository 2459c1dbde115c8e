"""Backups: taken while writing, checked before restoring, and bad files change nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest
import trio
from storekit import T0, heat_reading, open_store, series_id, trio_clock

from mbusgw.gateway.errors import BackupError, StoreLocked
from mbusgw.gateway.store import Store, StoreWriter
from mbusgw.gateway.store.backup import HEADER_SIZE, MAGIC, create_backup, restore_backup


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def backup_file(tmp_path):
    source = open_store(tmp_path / "source")
    source.put_readings([heat_reading("a", i) for i in range(300)])
    source.log.warning("test", "in the backup")
    source.update_settings({"store": {"log_max_days": 20}})
    path = tmp_path / "gateway.backup"
    create_backup(source.env, path, T0)
    source.close()
    return path


@pytest.fixture
def live(tmp_path):
    """A store with other contents, closed, that a restore may replace."""
    store = open_store(tmp_path / "live")
    store.put_readings([heat_reading("other", 0)])
    path = store.path
    store.close()
    return path


async def test_a_backup_taken_while_readings_arrive_is_consistent(tmp_path) -> None:
    store = open_store(tmp_path, clock=trio_clock())
    writer = StoreWriter(store)
    target = tmp_path / "running.backup"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)

            async def keep_writing() -> None:
                for i in range(200):
                    await writer.put_readings([heat_reading(m, i) for m in "abcd"])

            async with trio.open_nursery() as writers:
                writers.start_soon(keep_writing)
                await trio.sleep(0.01)
                info = await trio.to_thread.run_sync(create_backup, store.env, target, T0)
            writer.close()
    # whole cycles only, however the copy fell between the commits
    assert info.readings % 4 == 0 and info.values == 4 * info.readings
    restored = tmp_path / "restored" / "store.mdb"
    restore_backup(target, restored, full_check=True)
    copy = Store.open(restored, readonly=True)
    assert copy.stats().readings == info.readings
    assert copy.problems() == []
    copy.close()


def test_restore_replaces_the_store(backup_file, live) -> None:
    info = restore_backup(backup_file, live, full_check=True)
    assert (info.meters, info.readings) == (1, 300)
    store = Store.open(live, readonly=True)
    assert [m.name for m in store.meters()] == ["a"]
    assert len(store.values(series_id(store, "a", "energy"))) == 300
    assert store.stored_settings().store.log_max_days == 20
    assert [e.text for e in store.system_log()] == ["in the backup"]
    store.close()


def damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        del data[-5000:]
    elif how == "header only":
        del data[HEADER_SIZE:]
    elif how == "half a header":
        del data[100:]
    elif how == "flipped data bit":
        data[HEADER_SIZE + 9000] ^= 0x10
    elif how == "not a backup":
        data[:4] = b"PK\x03\x04"
    elif how == "garbled manifest":
        data[len(MAGIC) + 3] = ord("}")
    elif how == "other version":
        header = data[:HEADER_SIZE].split(b"\n")
        record = json.loads(header[1])
        record["format"] = 99
        text = MAGIC + json.dumps(record).encode() + b"\n"
        data[:HEADER_SIZE] = text.ljust(HEADER_SIZE, b"\0")
    elif how == "valid checksum, not a store":
        garbage = bytes(range(256)) * ((len(data) - HEADER_SIZE) // 256)
        header = data[:HEADER_SIZE].split(b"\n")
        record = json.loads(header[1])
        record["sha256"] = hashlib.sha256(garbage).hexdigest()
        record["data_bytes"] = len(garbage)
        text = MAGIC + json.dumps(record).encode() + b"\n"
        data = bytearray(text.ljust(HEADER_SIZE, b"\0") + garbage)
    elif how == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "header only",
        "half a header",
        "flipped data bit",
        "not a backup",
        "garbled manifest",
        "other version",
        "valid checksum, not a store",
        "empty",
    ],
)
def test_a_bad_backup_is_refused_and_changes_nothing(backup_file, live, how: str) -> None:
    before = digest(live)
    damage(backup_file, how)
    with pytest.raises(BackupError):
        restore_backup(backup_file, live)
    assert digest(live) == before
    assert sorted(p.name for p in live.parent.iterdir()) == [
        "store.key",
        "store.mdb",
        "store.mdb-lock",
    ]
    store = Store.open(live, readonly=True)
    assert [m.name for m in store.meters()] == ["other"]
    store.close()


def test_a_missing_backup_is_a_clear_error(tmp_path, live) -> None:
    with pytest.raises(BackupError, match="cannot read"):
        restore_backup(tmp_path / "nothing.backup", live)


def test_restore_refuses_a_store_that_is_open(backup_file, live) -> None:
    store = Store.open(live)
    with pytest.raises(StoreLocked):
        restore_backup(backup_file, live)
    store.close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from mbusgw.gateway.store import Store
                store = Store.open({str(live)!r}, readonly=True)
                print("open", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        before = digest(live)
        with pytest.raises(StoreLocked, match="stop the gateway"):
            restore_backup(backup_file, live)
        assert digest(live) == before
    finally:
        holder.communicate("", timeout=30)
