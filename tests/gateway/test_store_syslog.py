"""System log (SPEC §3): levels, one-minute silencing with a summary, caps, filters, CSV."""

from __future__ import annotations

import csv
import io

import pytest
import trio
from storekit import DAY, T0, FixedClock, open_store, trio_clock

from mbusgw.gateway.store import LogFilter, LogLevel, RetentionService, StoreWriter, SystemLog


def texts(log: SystemLog) -> list[tuple[float, str]]:
    return [(entry.time - T0, entry.text) for entry in log.take()]


def test_repeats_are_silenced_for_a_minute_then_summarised() -> None:
    clock = FixedClock(T0)
    log = SystemLog(clock)
    for _ in range(5):
        log.warning("bus:1", "no answer from meter 7")
        clock.advance(10)
    assert texts(log) == [(0, "no answer from meter 7")]
    clock.advance(20)  # the window ends at 60 s
    assert texts(log) == [(60, "no answer from meter 7 … repeated 4 more times")]
    log.warning("bus:1", "no answer from meter 7")  # the next one is written once again
    log.warning("bus:1", "no answer from meter 7")
    clock.advance(61)
    assert texts(log) == [
        (70, "no answer from meter 7"),
        (130, "no answer from meter 7 … repeated once more"),
    ]


def test_only_identical_messages_from_the_same_origin_are_silenced() -> None:
    clock = FixedClock(T0)
    log = SystemLog(clock)
    log.warning("bus:1", "no answer")
    log.warning("bus:2", "no answer")
    log.warning("bus:1", "no answer from meter 8")
    log.error("bus:1", "no answer")
    assert len(log.take()) == 4


def test_a_window_without_repeats_ends_silently() -> None:
    clock = FixedClock(T0)
    log = SystemLog(clock)
    log.info("web", "login admin")
    clock.advance(120)
    log.info("web", "login admin")
    assert texts(log) == [(0, "login admin"), (120, "login admin")]


def test_a_clock_stepped_back_does_not_silence_for_long() -> None:
    clock = FixedClock(T0)
    log = SystemLog(clock)
    log.warning("ntp", "drift")
    clock.advance(-3600)
    log.warning("ntp", "drift")
    assert [text for _, text in texts(log)] == ["drift", "drift"]


def test_minimum_level() -> None:
    clock = FixedClock(T0)
    log = SystemLog(clock)
    log.debug("bus", "frame bytes")
    assert log.take() == []
    log.min_level = LogLevel.DEBUG
    log.debug("bus", "frame bytes")
    assert len(log.take()) == 1


async def test_silencing_summary_reaches_the_disk_under_mock_clock(
    tmp_path, autojump_clock
) -> None:
    store = open_store(tmp_path, clock=trio_clock())
    writer = StoreWriter(store, in_thread=False)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for _ in range(30):
                store.log.error("scheduler", "read job failed")
                await trio.sleep(1)
            await trio.sleep(60)  # the writer wakes up by itself for the summary ...
            await writer.flush()  # ... and this makes sure its commit has returned
            await writer.update_settings({"log": {"min_level": -1}})
            store.log.debug("bus", "now debug is kept")
            await writer.flush()
            writer.close()
    entries = store.system_log()
    assert [(e.time - T0, e.level, e.text) for e in entries] == [
        (0, LogLevel.ERROR, "read job failed"),
        (60, LogLevel.ERROR, "read job failed … repeated 29 more times"),
        (entries[2].time - T0, LogLevel.DEBUG, "now debug is kept"),
    ]
    assert writer.batches >= 3


def test_the_size_cap_is_enforced_on_every_write(tmp_path) -> None:
    clock = FixedClock(T0)
    store = open_store(tmp_path, clock=clock)
    store.update_settings({"store": {"log_max_bytes": 64 * 1024}})
    for i in range(3000):
        store.log.info("test", f"message {i:05d} " + "x" * 40)
        clock.advance(0.001)
        if i % 100 == 99:
            store.write(lambda ctx: None)
    stats = store.stats()
    assert stats.log_bytes <= 64 * 1024
    kept = store.system_log()
    assert kept[-1].text.startswith("message 02999") and len(kept) == stats.log_entries < 3000
    assert store.problems() == []


async def test_the_age_cap_is_enforced_without_new_entries(tmp_path, autojump_clock) -> None:
    store = open_store(tmp_path, clock=trio_clock())
    writer = StoreWriter(store, in_thread=False)
    with trio.fail_after(100 * DAY):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            store.log.info("test", "old")
            await writer.flush()
            await trio.sleep(10 * DAY)
            store.log.info("test", "newer")
            await writer.flush()
            await nursery.start(RetentionService(writer, interval=3600).run)
            await trio.sleep(22 * DAY)  # "old" is now 32 days old
            await writer.flush()
            assert [e.text for e in store.system_log()] == ["newer"]
            nursery.cancel_scope.cancel()


@pytest.fixture
def filled(tmp_path):
    clock = FixedClock(T0)
    store = open_store(tmp_path, clock=clock)
    for i, (level, origin) in enumerate(
        [
            (LogLevel.INFO, "web"),
            (LogLevel.WARNING, "bus:1"),
            (LogLevel.ERROR, "bus:1"),
            (LogLevel.INFO, "bus:2"),
            (LogLevel.ERROR, "store"),
        ]
    ):
        store.log.log(level, origin, f"entry {i}, with a comma")
        clock.advance(3600)
    store.write(lambda ctx: None)
    yield store
    store.close()


def test_filters_by_level_date_and_origin(filled) -> None:
    def pick(**kwargs):
        return [e.text[:7] for e in filled.system_log(LogFilter(**kwargs))]

    assert pick(min_level=LogLevel.WARNING) == ["entry 1", "entry 2", "entry 4"]
    assert pick(since=T0 + 3600, until=T0 + 3 * 3600) == ["entry 1", "entry 2"]
    assert pick(origin="bus:1", max_level=LogLevel.WARNING) == ["entry 1"]
    assert [e.text[:7] for e in filled.system_log(limit=2)] == ["entry 3", "entry 4"]


def test_csv_export(filled) -> None:
    out = io.StringIO()
    assert filled.export_system_log(out, LogFilter(origin="bus:1")) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [
        ["time", "level", "level_name", "origin", "text"],
        ["2023-11-15T01:00:00.000+00:00", "1", "warning", "bus:1", "entry 1, with a comma"],
        ["2023-11-15T02:00:00.000+00:00", "2", "error", "bus:1", "entry 2, with a comma"],
    ]
