"""The single writer task: durable acknowledgements, group commit, isolation, full maps."""

from __future__ import annotations

import numpy as np
import pytest
import trio
from storekit import T0, heat_reading, open_store, raw_cycle, series_id, trio_clock

from mbusgw.gateway.errors import StoreClosed, StoreError
from mbusgw.gateway.store import LogFilter, StoredReading, StoreWriter
from mbusgw.gateway.store.env import MiB


@pytest.fixture
async def store(tmp_path):
    store = open_store(tmp_path, clock=trio_clock())
    yield store
    store.close()


async def test_a_cycle_is_acknowledged_once_it_is_stored(store) -> None:
    writer = StoreWriter(store)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            receipt = await writer.put_readings([heat_reading(m, 0) for m in "abc"])
            assert (receipt.first_seq, receipt.readings, receipt.values) == (0, 3, 12)
            # acknowledged means readable, from a second environment too
            assert store.values(series_id(store, "b", "energy")).values() == [12_000]
            second = await writer.put_readings([heat_reading("a", 1)])
            assert second.first_seq == 3
            writer.close()
    assert store.problems() == []


async def test_concurrent_writes_share_commits(store) -> None:
    writer = StoreWriter(store)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            async with trio.open_nursery() as callers:
                for i in range(40):
                    callers.start_soon(writer.put_readings, [heat_reading(f"m{i}", 0)])
            assert writer.batches < 40
            assert store.stats().readings == 40
            writer.close()


async def test_a_failing_operation_does_not_take_the_batch_down(store) -> None:
    writer = StoreWriter(store)

    def broken(ctx) -> None:
        ctx.txn.put(b"half", b"done", db=ctx.db.users)
        raise ValueError("broken operation")

    outcome: dict[str, object] = {}

    async def run_broken() -> None:
        with pytest.raises(ValueError, match="broken operation"):
            await writer.submit(broken)
        outcome["broken"] = True

    async def run_good() -> None:
        outcome["good"] = await writer.put_readings([heat_reading("a", 0)])

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            async with trio.open_nursery() as callers:
                callers.start_soon(run_broken)
                callers.start_soon(run_good)
            writer.close()
    assert outcome["broken"] and outcome["good"].readings == 1
    assert store.records("users") == {}  # the failed operation left nothing behind


async def test_a_bad_reading_is_refused_alone(store) -> None:
    writer = StoreWriter(store)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            bad = heat_reading("a", 0)
            bad.kind = np.array([1, 1, 1, 77], np.uint8)
            receipt = await writer.put_readings([heat_reading("b", 0), bad])
            writer.close()
    assert receipt.readings == 1 and receipt.refused == (
        ("a", "value kinds must be ValueKind codes"),
    )
    assert [m.name for m in store.meters()] == ["b"]
    logged = [(e.origin, e.text) for e in store.system_log(LogFilter(origin="a"))]
    assert logged == [("a", "reading not stored: value kinds must be ValueKind codes")]


async def test_a_closed_writer_refuses_work(store) -> None:
    writer = StoreWriter(store)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.close()
    with pytest.raises(StoreClosed):
        await writer.put_readings([heat_reading("a", 0)])
    # without a running writer, tools write synchronously again
    assert store.put_readings([heat_reading("a", 0)]).readings == 1


async def test_synchronous_writes_are_refused_while_a_writer_runs(store) -> None:
    writer = StoreWriter(store)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            with pytest.raises(StoreError, match="StoreWriter"):
                store.put_readings([heat_reading("a", 0)])
            writer.close()


async def test_a_full_map_grows_then_prunes_but_never_crashes(tmp_path) -> None:
    store = open_store(tmp_path, clock=trio_clock(), map_size=1 * MiB)
    store.update_settings({"store": {"max_bytes": 3 * MiB}})
    writer = StoreWriter(store)
    acknowledged = 0
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for cycle in range(100):
                await writer.put_readings(raw_cycle(cycle))
                acknowledged += 1
            await writer.flush()
            writer.close()
    assert acknowledged == 100
    events = [e.text for e in store.system_log(LogFilter(origin="store"))]
    assert any("grown" in text for text in events)
    assert any("store full" in text and "raw telegrams" in text for text in events)
    assert store.env.map_size <= 3 * MiB
    # the newest cycle is there, raw telegrams were pruned before any value
    last = store.values(series_id(store, "m19", "energy"))
    assert last.values()[-1] == 12_000 + 3 * 99 and len(last) == 100
    assert store.problems() == []


async def test_when_nothing_can_be_pruned_writes_fail_with_store_full(tmp_path) -> None:
    store = open_store(tmp_path, clock=trio_clock(), map_size=1 * MiB)
    store.update_settings({"store": {"max_bytes": 1 * MiB}})
    writer = StoreWriter(store)
    huge = [
        StoredReading.of(f"m{i}", T0, [(heat_reading("x", 0).series[3], "x" * 900)])
        for i in range(3000)
    ]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            with pytest.raises(StoreError, match="nothing more could be pruned"):
                await writer.put_readings(huge)
            # the writer is still alive and stores what fits
            receipt = await writer.put_readings([heat_reading("small", 0)])
            assert receipt.readings == 1
            writer.close()
