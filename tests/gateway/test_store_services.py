"""Compaction and retention as supervised services, driven by the mock clock."""

from __future__ import annotations

import trio
from storekit import DAY, T0, heat_reading, open_store, series_id, trio_clock

from mbusgw.gateway.store import CompactionService, LogFilter, RetentionService, StoreWriter


async def read_every_15_minutes(writer: StoreWriter, meters: list[str], cycles: int) -> None:
    """A stand-in for the scheduler: one reading cycle per 15 minutes, as one batch."""
    for i in range(cycles):
        await writer.put_readings([heat_reading(m, i, frames=[b"\x68\x16"]) for m in meters])
        await trio.sleep(900)


async def test_closed_days_are_compacted_while_readings_go_on(tmp_path, autojump_clock) -> None:
    store = open_store(tmp_path, clock=trio_clock(T0 + 7))
    writer = StoreWriter(store, in_thread=False)
    compaction = CompactionService(writer, interval=600)
    with trio.fail_after(10 * DAY):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await nursery.start(compaction.run)
            await read_every_15_minutes(writer, ["a", "b"], 96 * 3)
            await writer.flush()
            nursery.cancel_scope.cancel()
    stats = store.stats()
    # days 1 and 2 are closed (plus the hour of grace); day 3 has just ended
    assert stats.blocks == 4 and stats.rows_waiting == 2 * 96
    energy = store.values(series_id(store, "a", "energy"))
    assert energy.values() == [12_000 + 3 * i for i in range(96 * 3)]
    assert store.problems() == []


async def test_retention_drops_raw_telegrams_and_old_values_by_age(
    tmp_path, autojump_clock
) -> None:
    store = open_store(tmp_path, clock=trio_clock(T0 + 7))
    store.update_settings({"store": {"raw_days": 1, "value_days": 2}})
    writer = StoreWriter(store, in_thread=False)
    with trio.fail_after(10 * DAY):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await nursery.start(CompactionService(writer, interval=600).run)
            await nursery.start(RetentionService(writer, interval=600).run)
            await read_every_15_minutes(writer, ["a"], 96 * 4)
            await writer.flush()
            nursery.cancel_scope.cancel()
    now = store.now()
    raw = store.raw_telegrams("a")
    assert raw and min(r.received_at for r in raw) >= now - DAY - 600
    energy = store.values(series_id(store, "a", "energy"))
    assert energy.received_at.min() >= (int(now) // DAY - 2) * DAY
    assert energy.values()[-1] == 12_000 + 3 * (96 * 4 - 1)
    events = [e.text for e in store.system_log(LogFilter(origin="store"))]
    assert any(text.startswith("retention removed") for text in events)
    assert store.stats().values == sum(len(t) for t in store.meter_values("a").values())
    assert store.problems() == []
