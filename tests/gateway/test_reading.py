"""The reading pipeline's accounting: decode, health, events, snapshot, parallel lines.

The lines here replay real frames (libmbus vectors); the bus masters themselves are tested
against the simulator in their own tests and end to end in the gateway tests.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from mbusgw.gateway import handback
from mbusgw.gateway.busrequests import MeterAddress
from mbusgw.gateway.busthread import ThreadedBusMaster
from mbusgw.gateway.clock import TrioWallClock
from mbusgw.gateway.errors import MAX_ERROR_TEXT, Collision, bounded
from mbusgw.gateway.events import CYCLE_FINISHED, METER_FAILED, METER_RECOVERED, EventBus
from mbusgw.gateway.lines import BusLine
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.meters import AddressingMode, Meter
from mbusgw.gateway.reading import MeterReading, ReadingPipeline, heard_identities
from mbusgw.gateway.replies import ReadReply
from mbusgw.gateway.settings import InterfaceConfig
from mbusgw.gateway.simulator import MEDIAN_TEMPLATE, SimLine, make_meter, serve_tcp
from mbusgw.gateway.transport import tcp_line

DATA = Path(__file__).parent.parent / "data"
FRAME = bytes.fromhex((DATA / "libmbus/test-frames/ELV-Elvaco-CMa10.hex").read_text())


def replied(meter: Meter, frames: tuple[bytes, ...], duration: float = 0.0) -> ReadReply:
    """A clean read of ``meter`` (no retry) that ended now after ``duration`` seconds (the
    replayed meters need no address)."""
    ended = trio.current_time()
    return ReadReply(
        MeterAddress(),
        meter.addressing[0],
        frames,
        len(frames),
        ended - duration,
        ended,
        (duration,) * len(frames),
        True,
    )


class ReplayLine:
    """A line that answers after ``delay`` seconds with a fixed frame, or fails on demand."""

    def __init__(self, delay: float, failing: set[str] = frozenset()) -> None:
        self.delay = delay
        self.failing = set(failing)
        self.reads: list[tuple[str, float]] = []
        self.continuous: list[bool] = []

    async def read_meter(self, meter: Meter, *, continuous: bool = False) -> ReadReply:
        self.reads.append((meter.key, trio.current_time()))
        self.continuous.append(continuous)
        await trio.sleep(self.delay)
        if meter.key in self.failing:
            raise TimeoutError(f"no response from {meter.key}")
        return replied(meter, (FRAME,), self.delay)

    async def read_round(
        self,
        meters: Sequence[Meter],
        on_reply: Callable[[int, Any], None],
        *,
        continuous: bool = False,
        prepare: Callable[[int, ReadReply | Exception], tuple[Any, bool]] | None = None,
    ) -> None:
        for k, one in enumerate(meters):
            try:
                reply: ReadReply | Exception = await self.read_meter(one, continuous=continuous)
            except Exception as exc:
                reply = exc
            on_reply(k, reply if prepare is None else prepare(k, reply)[0])


def meter(key: str, line: str) -> Meter:
    return Meter(
        key=key,
        position=key,
        secondary_address=key,
        baud=2400,
        addressing=(AddressingMode.SECONDARY,),
        interface=line,
    )


async def test_cycle_reads_lines_in_parallel_and_accounts(autojump_clock) -> None:
    clock = TrioWallClock(datetime(2026, 11, 24, tzinfo=UTC))
    lines = {"a": ReplayLine(0.5), "b": ReplayLine(0.5, failing={"B2"})}
    events = EventBus()
    subscriber = events.subscribe()
    live = LiveSnapshot()
    pipeline = ReadingPipeline(lines, clock, events=events, live=live)
    meters = [
        meter("A1", "a"),
        meter("A2", "a"),
        meter("B1", "b"),
        meter("B2", "b"),
        meter("C1", "nowhere"),
    ]
    result = await pipeline.read_cycle(meters)
    assert not any(lines["a"].continuous)
    # two lines in parallel, two meters each in series: one second in all
    assert (result.finished - result.started).total_seconds() == 1.0
    assert {r.meter.key for r in result.failed} == {"B2", "C1"}
    good = next(r for r in result.readings if r.meter.key == "A1")
    assert good.telegrams[0].header.id == "24011561" and good.status_byte == 0
    assert "not configured" in next(r.error for r in result.readings if r.meter.key == "C1")
    kinds = [subscriber.receive_nowait().kind for _ in range(3)]
    assert kinds.count(METER_FAILED) == 2 and kinds[-1] == CYCLE_FINISHED
    assert live.last_good("A1").telegrams[0].header.manufacturer == "ELV"
    assert pipeline.health["B2"].status == "failed"

    lines["b"].failing.clear()
    await pipeline.read_cycle([meter("B2", "b")])
    assert pipeline.health["B2"].status == "ok"
    assert subscriber.receive_nowait().kind == METER_RECOVERED


async def test_a_cycle_is_announced_after_its_readings_are_stored(autojump_clock) -> None:
    clock = TrioWallClock(datetime(2026, 11, 24, tzinfo=UTC))
    events = EventBus()
    pipeline = ReadingPipeline({"a": ReplayLine(0.5)}, clock, events=events, live=LiveSnapshot())
    committed: list[str] = []
    seen_at_announcement: list[list[str]] = []

    async def store(readings) -> dict[str, str]:
        await trio.sleep(2)  # a slow commit
        committed.extend(r.meter.key for r in readings)
        return {}

    async def watch(subscriber) -> None:
        async for event in subscriber:
            if event.kind == CYCLE_FINISHED:
                seen_at_announcement.append(list(committed))
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, events.subscribe())
        await pipeline.read_cycle([meter("A1", "a"), meter("A2", "a")], store=store)
    assert seen_at_announcement == [["A1", "A2"]]


async def test_corrupt_reply_fails_the_reading_but_keeps_the_bytes(autojump_clock) -> None:
    class BadLine(ReplayLine):
        async def read_meter(self, meter: Meter, *, continuous: bool = False) -> ReadReply:
            truncated = FRAME[:6] + FRAME[7:]  # the CI byte is gone: checksum and length fail
            return replied(meter, (truncated,))

    clock = TrioWallClock(datetime(2026, 11, 24, tzinfo=UTC))
    pipeline = ReadingPipeline({"a": BadLine(0)}, clock, events=EventBus(), live=LiveSnapshot())
    reading = await pipeline.read_one(meter("A1", "a"))
    assert not reading.ok and reading.frames and reading.error.startswith("FrameError")


async def test_a_long_error_is_cut_where_its_text_is_made(autojump_clock) -> None:
    garble = "E5 00 " * 1200 + "ünïcödé"

    class GarbledLine(ReplayLine):
        async def read_meter(self, meter: Meter, *, continuous: bool = False) -> ReadReply:
            raise Collision(meter.key, 3, garble)

    clock = TrioWallClock(datetime(2026, 11, 24, tzinfo=UTC))
    pipeline = ReadingPipeline({"a": GarbledLine(0)}, clock, events=EventBus(), live=LiveSnapshot())

    async def store(readings) -> dict[str, str]:
        return {"A2": "error must be text of at most 1000 bytes"}

    result = await pipeline.read_cycle([meter("A1", "a"), meter("A2", "a")], store=store)
    error = result.readings[0].error
    whole = f"Collision: garbled answer from A1 after 3 attempt(s): {garble}"
    assert len(error.encode()) <= MAX_ERROR_TEXT
    assert error.startswith(whole[:60]) and error.endswith(f"… ({len(whole)} characters)")
    assert bounded("ü" * 600).encode().decode() == bounded("ü" * 600)  # never a cut character
    summary = result.summary()
    assert summary.startswith("0 of 2 meters read, 2 failed (A1: Collision: garbled answer")
    assert "A2 not stored: error must be text of at most 1000 bytes" in summary
    assert len(summary.encode()) <= MAX_ERROR_TEXT


async def test_a_good_reply_tells_what_the_meter_is(autojump_clock) -> None:
    clock = TrioWallClock(datetime(2026, 11, 24, tzinfo=UTC))
    lines = {"a": ReplayLine(0), "b": ReplayLine(0, failing={"24011561"})}
    pipeline = ReadingPipeline(lines, clock, events=EventBus(), live=LiveSnapshot())
    meters = [
        meter("24011561", "a"),  # the frame's own ID
        meter("11111111", "a"),  # another meter answered: says nothing about this one
        replace(meter("24011561", "a"), key="radio", wireless=True),  # known by its link layer
        meter("24011561", "b"),  # failed
    ]
    result = await pipeline.read_cycle(meters)
    (header,) = {r.telegrams[0].header for r in result.readings if r.ok}
    heard = (header.manufacturer, header.version, header.medium)
    assert heard[0] == "ELV" and heard_identities(result.readings) == {"24011561": heard}


async def test_continuous_mode_reads_back_to_back_into_the_snapshot(autojump_clock) -> None:
    clock = TrioWallClock(datetime(2026, 11, 24, tzinfo=UTC))
    line = ReplayLine(0.25)
    live = LiveSnapshot()
    pipeline = ReadingPipeline({"a": line}, clock, events=EventBus(), live=live)
    meters = [meter("A1", "a"), meter("A2", "a")]
    with trio.move_on_after(10.1):
        await pipeline.run_continuous(lambda name: meters)
    # reads start every 0.25 s with no gap: 41 started by 10.1 s, 40 of them finished
    starts = [t for _, t in line.reads]
    assert starts == [i * 0.25 for i in range(41)]
    assert live.version == 40
    assert all(line.continuous)  # the lines may keep the meters' link state between reads


def on_native_line(key: str, primary: int) -> Meter:
    return replace(
        meter(key, "a"),
        primary_address=primary,
        secondary_address=None,
        baud=9600,
        addressing=(AddressingMode.PRIMARY,),
    )


@contextmanager
def simulator_in_its_own_thread(line: SimLine) -> Iterator[int]:
    """``line`` served on a loopback port (yielded) by a trio run of its own in another thread:
    it keeps answering while a test holds its own trio thread up."""
    ports: queue.Queue[int] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            ports.put(await nursery.start(serve_tcp, line, "127.0.0.1", 0))
            await trio.to_thread.run_sync(stop.wait)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    try:
        yield ports.get(timeout=10)
    finally:
        stop.set()
        thread.join(10)


@dataclass
class NativeLine:
    """A pipeline reading line "a" through the native driver: meters M1 and M3 answer at
    primary addresses 1 and 3, nobody at 2 (M2)."""

    pipeline: ReadingPipeline
    nursery: trio.Nursery
    bus: trio.CancelScope  # cancelling it stops the line's driver
    meters: dict[str, Meter]

    async def round(self, keys: str, done: list[MeterReading]) -> None:
        """Reads the meters named by ``keys`` ("1 2 3") as one continuous round into ``done``."""
        chosen = [self.meters[f"M{n}"] for n in keys.split()]
        done.extend(await self.pipeline.read_line(chosen, continuous=True))

    async def round_under_way(self, keys: str, done: list[MeterReading], shown: int) -> trio.Event:
        """Starts that round in the background and returns once ``shown`` of its readings are
        in the snapshot, with an event set when the round is over."""
        start = self.pipeline.live.version
        ended = trio.Event()

        async def read_round() -> None:
            await self.round(keys, done)
            ended.set()

        self.nursery.start_soon(read_round)
        while self.pipeline.live.version - start < shown:
            await trio.sleep(0.005)
        return ended


@asynccontextmanager
async def native_line() -> AsyncIterator[NativeLine]:
    sim = SimLine(
        [
            make_meter(MEDIAN_TEMPLATE, "11111111", primary=1),
            make_meter(MEDIAN_TEMPLATE, "33333333", primary=3),
        ],
        9600,
    )
    clock = TrioWallClock(datetime(2026, 11, 24, tzinfo=UTC))
    with simulator_in_its_own_thread(sim) as port, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            config = InterfaceConfig(name="a", kind="tcp", host="127.0.0.1", port=port, baud=9600)
            line = BusLine(config, tcp_line("127.0.0.1", port, 9600), "threads")
            assert isinstance(line.master, ThreadedBusMaster)
            bus = trio.CancelScope()

            async def run_bus(task_status: trio.TaskStatus[None]) -> None:
                with bus:
                    await line.master.run(task_status=task_status)

            await nursery.start(run_bus)
            pipeline = ReadingPipeline({"a": line}, clock, events=EventBus(), live=LiveSnapshot())
            meters = {f"M{n}": on_native_line(f"M{n}", n) for n in (1, 2, 3)}
            yield NativeLine(pipeline, nursery, bus, meters)
            nursery.cancel_scope.cancel()
        await line.transport.aclose()


async def test_a_round_on_the_native_driver_shows_each_reading_before_the_round_ends() -> None:
    """Continuous mode hands a whole round of a line to the native driver as one request; each
    reading is still in the snapshot as soon as it is back, not when the round is over."""
    round_over = False
    seen_during_round: list[str] = []
    readings: list[MeterReading] = []
    async with native_line() as rig:
        live = rig.pipeline.live

        async def watch() -> None:
            await live.wait_for_change(0)
            if not round_over:
                seen_during_round.extend(r.meter_key for r in live.changes_after(0)[1])

        rig.nursery.start_soon(watch)
        await rig.round("1 2 3", readings)
        round_over = True
    assert [(r.meter.key, r.ok) for r in readings] == [("M1", True), ("M2", False), ("M3", True)]
    assert "M1" in seen_during_round
    assert live.last_good("M3") is not None and live.latest("M2").error.startswith("NoResponse")


async def test_a_native_reading_is_in_the_snapshot_while_trio_is_held_up() -> None:
    """The line's thread decodes a reading and puts it in the snapshot and its health itself:
    pollers see them while trio's thread is busy; the round's list and events follow when trio
    runs again."""
    readings: list[MeterReading] = []
    async with native_line() as rig:
        live, health = rig.pipeline.live, rig.pipeline.health
        await rig.round("3", [])  # the line is open now (opening it needs trio)
        finished = trio.Event()

        async def read_round() -> None:
            await rig.round("1 3", readings)
            finished.set()

        rig.nursery.start_soon(read_round)
        await trio.testing.wait_all_tasks_blocked()  # the round is the thread's now
        deadline = time.monotonic() + 10
        while live.latest("M1") is None:  # trio's thread is held up all along
            assert time.monotonic() < deadline, "the reading did not reach the snapshot"
            time.sleep(0.005)
        while health["M1"].readings < 1:  # recorded where it was read, with the snapshot
            assert time.monotonic() < deadline, "the reading did not reach its health"
            time.sleep(0.005)
        assert live.latest("M1").ok and not readings  # its trio side has not run
        await finished.wait()
    assert [r.meter.key for r in readings] == ["M1", "M3"] and all(r.ok for r in readings)
    assert health["M1"].readings == 1 and health["M3"].readings == 2


async def test_a_native_failure_reaches_trio_at_once_good_readings_with_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handback, "HAND_BACK_INTERVAL", 60.0)  # good readings wait for the end
    readings: list[MeterReading] = []
    async with native_line() as rig:
        live, health = rig.pipeline.live, rig.pipeline.health
        failures = rig.pipeline.events.subscribe()
        await rig.round("3", [])
        before = live.latest("M3")
        rig.nursery.start_soon(rig.round, "1 2 3 1 1 1 1 1 1", readings)
        event = await failures.receive()
        assert (event.kind, event.meter_key) == (METER_FAILED, "M2") and not readings
        assert health["M1"].readings >= 1  # its first: handed over before the failure, with it
        while health["M3"].readings < 2:  # recorded where it was read, with the snapshot
            await trio.sleep(0.005)
        assert live.latest("M3") is not before and not readings  # the round's trio side waits
        while not readings:
            await trio.sleep(0.005)
    assert [r.meter.key for r in readings] == ["M1", "M2", "M3"] + ["M1"] * 6
    assert (health["M1"].readings, health["M2"].readings, health["M3"].readings) == (7, 1, 2)


class TaskSteps(trio.abc.Instrument):
    """Counts the steps trio runs of each task, by the task's name."""

    def __init__(self) -> None:
        self.steps: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name] += 1


async def test_a_continuous_reading_trio_has_nothing_to_do_for_wakes_nobody(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A continuous reading with no event and nobody waiting for the snapshot is in the
    snapshot and in its meter's health at once and does not wake trio's thread: it is not
    handed back at all, the round returns it."""
    monkeypatch.setattr(handback, "HAND_BACK_INTERVAL", 0.01)
    readings: list[MeterReading] = []
    counter = TaskSteps()
    handed_back: list[Callable[..., Any]] = []
    call = handback.HandBack.call

    def counted(
        hand_back: handback.HandBack, function: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        handed_back.append(function)
        call(hand_back, function, *args, **kw)

    monkeypatch.setattr(handback.HandBack, "call", counted)
    async with native_line() as rig:
        live, health = rig.pipeline.live, rig.pipeline.health
        await rig.round("1 3", [])  # the line is open now (opening it needs trio)
        trio.lowlevel.add_instrument(counter)
        handed_back.clear()
        try:
            await rig.round("1 3 " * 4, readings)
        finally:
            trio.lowlevel.remove_instrument(counter)
    assert [r.meter.key for r in readings] == ["M1", "M3"] * 4 and all(r.ok for r in readings)
    assert (health["M1"].readings, health["M3"].readings) == (5, 5)
    assert live.version == 10
    assert counter.steps["hand back"] == 0  # no tick
    assert counter.steps["<TrioToken.run_sync_soon task>"] == 1  # the round's end
    assert len(handed_back) == 1  # its reply alone


async def test_a_continuous_reading_wakes_a_task_waiting_for_the_snapshot_with_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Someone waits for a change (the Modbus image): the reading comes to trio within the
    hand-back's interval, not with the round's end."""
    monkeypatch.setattr(handback, "HAND_BACK_INTERVAL", 0.01)
    woken_during_round: list[int] = []
    round_over = False
    async with native_line() as rig:
        live = rig.pipeline.live
        await rig.round("1 3", [])
        version = live.version

        async def wait() -> None:
            woken_during_round.append(await live.wait_for_change(version) - version)
            assert not round_over

        rig.nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        await rig.round("1 3 " * 4, [])
        round_over = True
    assert woken_during_round and woken_during_round[0] < 8


async def test_a_continuous_round_on_the_native_driver_gives_way_to_a_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its readings need not wake trio, but the one made while a cycle waits for the line
    does: the round ends after it, and the cycle reads the line."""
    monkeypatch.setattr(handback, "HAND_BACK_INTERVAL", 60.0)
    continuous: list[MeterReading] = []
    async with native_line() as rig:
        await rig.round("1 3", [])
        ended = await rig.round_under_way("1 3 " * 50, continuous, 2)
        cycle = await rig.pipeline.read_cycle([rig.meters["M1"], rig.meters["M3"]])
        await ended.wait()
    assert [(r.meter.key, r.ok) for r in cycle.readings] == [("M1", True), ("M3", True)]
    assert 2 <= len(continuous) < 10 and all(r.ok for r in continuous)  # not its 100


async def test_the_readings_in_hand_are_delivered_when_the_native_driver_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handback, "HAND_BACK_INTERVAL", 60.0)
    readings: list[MeterReading] = []
    async with native_line() as rig:
        live = rig.pipeline.live
        await rig.round("1", [])
        start = live.version
        finished = await rig.round_under_way("1 3 " * 20, readings, 3)
        rig.bus.cancel()
        await finished.wait()
    visible = [r.meter_key for r in live.changes_after(start)[1] if r.ok]
    accounted = [r.meter.key for r in readings if r.ok]
    assert len(accounted) >= 3 and accounted == visible  # none lost, none reordered
    assert all("stopped" in (r.error or "") for r in readings[len(accounted) :])
    assert sum(h.readings for h in rig.pipeline.health.values()) == 1 + len(readings)


async def test_a_meter_that_cannot_be_planned_fails_alone_in_its_round() -> None:
    """A meter whose address the bus cannot take fails without reaching the line; the readings
    of the others in the same round stay theirs, in the snapshot and in the round's list."""
    async with native_line() as rig:
        unreachable = replace(on_native_line("BAD", 1), primary_address=251)
        readings = await rig.pipeline.read_line(
            [rig.meters["M1"], unreachable, rig.meters["M3"]], continuous=True
        )
        live = rig.pipeline.live
    assert [(r.meter.key, r.ok) for r in readings] == [("M1", True), ("BAD", False), ("M3", True)]
    assert "primary_address" in readings[1].error and "251" in readings[1].error
    assert live.latest("BAD").error == readings[1].error
    for reading, identification in ((readings[0], "11111111"), (readings[2], "33333333")):
        assert live.latest(reading.meter.key).telegrams == reading.telegrams
        assert reading.telegrams[0].header.id == identification
    assert rig.pipeline.health["M3"].readings == 1 and rig.pipeline.health["BAD"].failures == 1
