"""The key store in the store's ``keys`` table: every change on disk before it is in force,
the table one whole snapshot, a bad file or a failed write changing nothing, and key material
written nowhere but the store."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
from test_keys import ELS, GOOD, N21, OTHER

from mbusgw.core.wireless_decoder import WirelessDecoder
from mbusgw.gateway.key_records import (
    StoreKeyBackend,
    snapshot_from_records,
    snapshot_records,
)
from mbusgw.gateway.keys import KeyFileError, KeyStore
from mbusgw.gateway.store import Store, StoreWriter, store_path
from mbusgw.gateway.store.configfile import render_config

DES = "0011223344556677"
HEADER = "Address,Key,Manufacturer,DeviceType,Version\n"


async def with_store(path: Path, work) -> None:
    """Run ``work(store, writer, keys, problems)`` on the store at ``path`` (opened afresh)."""
    store = Store.open(store_path(path))
    problems: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            writer = StoreWriter(store, in_thread=False)
            await nursery.start(writer.run)
            keys = KeyStore(StoreKeyBackend(store, writer, problems.append))
            await work(store, writer, keys, problems)
            writer.close()
    finally:
        store.close()


async def test_keys_survive_a_restart_and_decrypt(tmp_path: Path) -> None:
    async def first(store, writer, keys, problems) -> None:
        added = await keys.import_file((HEADER + f"12345678,{OTHER},ELS,-1,-1\n").encode(), "k.csv")
        assert added == 1
        await keys.add(DES, manufacturer="KAM", device_type=7)
        await keys.link(ELS, GOOD)
        entries = await keys.add(OTHER, address="87654321")
        await keys.remove(entries[0].id)

    async def second(store, writer, keys, problems) -> None:
        assert problems == []
        listing = keys.listing()
        assert [e["address"] for e in listing["entries"]] == ["12345678", None]
        assert listing["links"][0]["meter"]["id"] == "12345678"
        masked = [key.masked for key in keys.keys_for(ELS)]
        assert masked == ["0" + "*" * 30 + "1", "0" + "*" * 30 + "F"]
        telegram = WirelessDecoder(keys=keys).decode(N21)
        assert telegram.payload[:2] == b"\x2f\x2f"
        (entry,) = await keys.add(OTHER, address="11111111")
        assert entry.id == 4  # ids are never reused, also after a restart
        assert not keys.pristine
        assert len(store.records("keys")) == 5  # state, three entries, one link

    with trio.fail_after(30):
        await with_store(tmp_path, first)
        await with_store(tmp_path, second)


async def test_a_bad_file_or_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    async def work(store, writer, keys, problems) -> None:
        await keys.add(GOOD, address="12345678")
        before = store.records("keys")
        with pytest.raises(KeyFileError):
            await keys.import_file(
                (HEADER + f"12345678,{OTHER},ELS,3,51\n1234,{GOOD[:31]},ELS,3,51\n").encode(),
                "bad.csv",
                replace_all=True,
            )
        assert store.records("keys") == before
        writer.close()  # the next save cannot reach the disk
        with pytest.raises(Exception, match="writer"):
            await keys.add(OTHER, manufacturer="ELS")
        assert len(keys.entries()) == 1
        assert store.records("keys") == before

    with trio.fail_after(30):
        await with_store(tmp_path, work)


async def test_damaged_records_are_reported_by_name_and_left_out(tmp_path: Path) -> None:
    async def seed(store, writer, keys, problems) -> None:
        await keys.add(GOOD, address="12345678")
        await keys.add(OTHER, address="87654321")
        record = store.record("keys", "entry:00000002")
        await writer.put_record("keys", "entry:00000002", {**record, "key": record["key"][:-2]})
        await writer.put_record("keys", "mystery", {"key": GOOD})

    async def load(store, writer, keys, problems) -> None:
        assert [e.address for e in keys.entries()] == ["12345678"]
        assert sorted(problems) == [
            "key store record 'entry:00000002' left out: the key is not 16 or 32 hex digits",
            "key store record 'mystery' left out: unknown kind of record",
        ]
        (entry,) = await keys.add(OTHER, address="22222222")
        assert entry.id == 3  # the counter is kept although the entry was left out

    with trio.fail_after(30):
        await with_store(tmp_path, seed)
        await with_store(tmp_path, load)


async def test_key_material_goes_to_the_store_only(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)

    async def work(store, writer, keys, problems) -> None:
        await keys.add(GOOD, address="12345678")
        await keys.link(ELS, OTHER)
        await writer.flush()
        shown = repr(keys.listing()) + repr(keys.entries()) + repr(keys.links())
        log = " ".join(entry.text for entry in store.system_log())
        config = render_config(store.settings, 0)
        for secret in (GOOD, OTHER):
            assert secret not in (shown + caplog.text + log + config).upper()
        stored = snapshot_records(snapshot_from_records(store.records("keys"), problems.append))
        assert {r.get("key") for r in stored.values()} >= {GOOD, OTHER}

    with trio.fail_after(30):
        await with_store(tmp_path, work)
