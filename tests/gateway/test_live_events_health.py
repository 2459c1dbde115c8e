"""Continuous-read snapshot, event fan-out and meter health transitions."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta

import trio
import trio.testing

from mbusgw.gateway.events import METER_FAILED, METER_RECOVERED, Event, EventBus
from mbusgw.gateway.health import WINDOW, MeterHealth
from mbusgw.gateway.live import RECENT, LiveReading, LiveSnapshot

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def test_snapshot_keeps_last_good_and_wakes_followers() -> None:
    snapshot = LiveSnapshot()
    seen: list[int] = []

    async def follower() -> None:
        version = 0
        for _ in range(2):
            version = await snapshot.wait_for_change(version)
            seen.append(version)

    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower)
            await trio.testing.wait_all_tasks_blocked()
            snapshot.update(LiveReading("A", T0, True, ("telegram",)))
            await trio.testing.wait_all_tasks_blocked()
            snapshot.update(LiveReading("A", T0 + timedelta(seconds=2), False, error="timeout"))
    assert seen == [1, 2]
    assert snapshot.latest("A").ok is False
    assert snapshot.last_good("A").telegrams == ("telegram",)
    snapshot.forget({"A"})
    assert snapshot.latest("A") is None and snapshot.all_last_good() == {}


async def test_snapshot_put_tells_whether_a_task_waits_for_a_change() -> None:
    """What the line threads ask before waking trio for a reading: only a task in
    ``wait_for_change`` needs it; one woken, or cancelled, no longer counts."""
    snapshot = LiveSnapshot()
    assert snapshot.put(LiveReading("A", T0, True)) is False  # nobody waits
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(snapshot.wait_for_change, snapshot.version)
            await trio.testing.wait_all_tasks_blocked()
            assert snapshot.put(LiveReading("A", T0, True)) is True
            snapshot.notify()
        assert snapshot.put(LiveReading("A", T0, True)) is False  # it was woken and left
        with trio.move_on_after(0.01):
            await snapshot.wait_for_change(snapshot.version)
    assert snapshot.put(LiveReading("A", T0, True)) is False  # it was cancelled
    assert await snapshot.wait_for_change(0) == snapshot.version == 4  # newer: no wait


def test_snapshot_tells_what_changed_since_a_version() -> None:
    snapshot = LiveSnapshot()
    assert snapshot.changes_after(0)[1] == []
    for k in range(3):
        snapshot.update(LiveReading(f"M{k}", T0, k != 1))
    assert [r.meter_key for r in snapshot.changes_after(1)[1]] == ["M1", "M2"]
    assert snapshot.changes_after(snapshot.version)[1] == []
    for k in range(RECENT + 10):
        snapshot.update(LiveReading(f"N{k}", T0, True))
    behind = snapshot.changes_after(0)[1]  # only the most recent ones are kept
    assert len(behind) == RECENT and behind[-1].meter_key == f"N{RECENT + 9}"


async def test_event_bus_fans_out_and_counts_what_a_slow_subscriber_loses() -> None:
    bus = EventBus()
    fast = bus.subscribe(buffer=10)
    slow = bus.subscribe(buffer=1)
    for i in range(3):
        bus.publish(Event(METER_FAILED, T0, f"m{i}"))
    assert [fast.receive_nowait().meter_key for _ in range(3)] == ["m0", "m1", "m2"]
    assert slow.receive_nowait().meter_key == "m0"
    assert bus.dropped == 2
    await slow.aclose()
    bus.publish(Event(METER_FAILED, T0, "m3"))  # a closed subscriber is forgotten
    assert fast.receive_nowait().meter_key == "m3"


def test_health_transitions_and_rates() -> None:
    health = MeterHealth("A")
    assert health.status == "never" and health.success_rate is None
    assert health.record(T0, True, response_ms=120.0) is None
    failed = health.record(T0 + timedelta(minutes=15), False, retries=2, error="no response")
    assert failed.kind == METER_FAILED and failed.detail == {"error": "no response"}
    assert health.record(T0 + timedelta(minutes=30), False, error="no response") is None
    recovered = health.record(T0 + timedelta(minutes=45), True, retries=1, response_ms=90.0)
    assert recovered.kind == METER_RECOVERED
    assert health.success_rate == 0.5
    assert health.as_dict()["last_good"] == "2026-11-24T12:45:00+00:00"
    assert (health.readings, health.failures, health.last_retries) == (4, 2, 1)


def test_health_success_rate_covers_the_last_window_of_readings() -> None:
    health = MeterHealth("A")
    for k in range(WINDOW):
        health.record(T0 + timedelta(minutes=15 * k), False, error="no response")
    assert health.success_rate == 0.0
    for k in range(WINDOW // 4):  # the oldest quarter of the failures leaves the window
        health.record(T0 + timedelta(days=1, minutes=15 * k), True, response_ms=90.0)
    assert health.success_rate == 0.25
    for k in range(WINDOW):
        health.record(T0 + timedelta(days=2, minutes=15 * k), True, response_ms=90.0)
    assert health.success_rate == 1.0
    assert (health.readings, health.failures) == (WINDOW * 2 + WINDOW // 4, WINDOW)


def test_health_of_a_site_stays_small() -> None:
    """512 meters' health, each with a full window, as the gateway keeps it while it runs."""
    tracemalloc.start()
    try:
        healths = [MeterHealth(f"line{k // 64}-{k % 64}") for k in range(512)]
        for health in healths:
            for n in range(WINDOW + 4):
                health.record(T0, n % 3 != 0, response_ms=90.0)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 300 * 1024  # a deque of 96 booleans per meter: about 1 MB
