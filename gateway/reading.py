"""The reading pipeline: meters → their lines' bus masters → decode → one store batch per cycle,
with the meter log, health, events and the continuous-read snapshot kept up to date.

Lines are read in parallel; meters on one line are read one after the other (one master owns a
line). A scheduled cycle is stored as one batch; continuous mode reads back to back and writes
only to the in-memory snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import trio

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.errors import bounded
from mbusgw.gateway.events import CYCLE_FINISHED, Event, EventBus
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.ledger import Ledger
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.meters import Identity, Meter
from mbusgw.gateway.replies import MeterReading, ReadReply, meter_reading


class _GiveWay(Exception):
    """Ends a continuous round early: a reading cycle has started on its line."""


class LineReader(Protocol):
    """The part of a bus master the pipeline uses; raises ``Exception`` when a read fails."""

    async def read_meter(self, meter: Meter, *, continuous: bool = False) -> ReadReply:
        """``continuous``: one of the back-to-back reads of continuous mode."""
        ...

    async def read_round(
        self,
        meters: Sequence[Meter],
        on_reply: Callable[[int, Any], None],
        *,
        continuous: bool = False,
        prepare: Callable[[int, ReadReply | Exception], tuple[Any, bool | None]] | None = None,
    ) -> None:
        """The meters (all on this line) one after the other; ``on_reply(k, reply)`` with the
        k-th meter's reply, or the error that failed it, as soon as it is read. With
        ``prepare``, ``on_reply(k, prepare(k, reply)[0])``: ``prepare`` may run in another
        thread as soon as the meter is read, ``on_reply`` later in trio (with the second value
        true, at once; with it None, never: trio has nothing to do for that reading)."""
        ...


_Prepared = tuple[MeterReading, bool, Event | None]
"""A reading as its line's thread leaves it: whether its health is recorded, and its event."""

MetersOfLine = Callable[[str], list[Meter]]
"""The active meters of a line, asked afresh each round (installations change)."""

ReadingSink = Callable[[Sequence[MeterReading]], Awaitable[dict[str, str]]]
"""Stores one cycle's readings durably; returns once they are committed, with the meters whose
reading the store refused and why."""

CycleProgress = Callable[[int, int], None]
"""``progress(read, total)`` of a reading cycle, told after each of its readings."""

SUMMARY_NAMES = 3  # meters named in a cycle's summary, with their trouble
SUMMARY_CAUSE = 200  # bytes of each trouble's cause in a summary


@dataclass
class CycleResult:
    started: datetime
    finished: datetime
    readings: list[MeterReading] = field(default_factory=list)
    not_stored: dict[str, str] = field(default_factory=dict)  # meter → why the store refused

    @property
    def failed(self) -> list[MeterReading]:
        return [r for r in self.readings if not r.ok]

    def summary(self) -> str:
        """One line for a person: how many meters were read, and which failed or were not
        stored, with the cause."""
        failed = self.failed
        text = f"{len(self.readings) - len(failed)} of {len(self.readings)} meters read"
        text += f", {len(failed)} failed"
        troubles = [f"{r.meter.key}: {r.error}" for r in failed]
        troubles += [f"{key} not stored: {why}" for key, why in self.not_stored.items()]
        troubles = [bounded(trouble, SUMMARY_CAUSE) for trouble in troubles]
        if troubles:
            more = len(troubles) - SUMMARY_NAMES
            text += " (" + "; ".join(troubles[:SUMMARY_NAMES])
            text += f"; and {more} more)" if more > 0 else ")"
        return bounded(text)


def heard_identities(readings: Iterable[MeterReading]) -> dict[str, Identity]:
    """By meter key, the manufacturer, version and medium the header of each good reading of
    a wired meter carries (a wireless meter is known by its link layer, ``gateway.wireless``);
    a reply naming another ID than the meter's says nothing about the meter."""
    heard: dict[str, Identity] = {}
    for reading in readings:
        if not reading.ok or not reading.telegrams or reading.meter.wireless:
            continue
        header = reading.telegrams[0].header
        manufacturer, version, medium = header.manufacturer, header.version, header.medium
        if manufacturer is None or version is None or medium is None:
            continue
        secondary = reading.meter.secondary_address
        if header.id and secondary and header.id.upper() != secondary.upper():
            continue
        heard[reading.meter.key] = (manufacturer, version, medium)
    return heard


class ReadingPipeline:
    """Reads meters through their lines and accounts for every outcome."""

    def __init__(
        self,
        lines: dict[str, LineReader],
        clock: WallClock,
        *,
        events: EventBus,
        live: LiveSnapshot,
        health: dict[str, MeterHealth] | None = None,
    ) -> None:
        self.lines = lines
        self.clock = clock
        self.events = events
        self.live = live
        self.health = health if health is not None else {}
        self._ledger = Ledger(live, self.health)
        self._cycles: dict[str, int] = {}  # line → cycles reading it now
        self._line_free = trio.Event()  # set (and replaced) when a line's cycles end

    async def read_one(self, meter: Meter, *, continuous: bool = False) -> MeterReading:
        line = self.lines.get(meter.interface)
        if line is None:
            reading = self._unconfigured(meter)
        else:
            try:
                reply: ReadReply | Exception = await line.read_meter(meter, continuous=continuous)
            except Exception as exc:
                reply = exc
            reading = meter_reading(meter, reply, self.clock.now())
        self._account(reading)
        return reading

    async def read_line(
        self,
        meters: Sequence[Meter],
        *,
        continuous: bool = False,
        each: Callable[[MeterReading], None] | None = None,
    ) -> list[MeterReading]:
        """Meters of one line read as one round by its master (one request, not one per meter),
        each reading in the snapshot and in its meter's health as soon as it is read (the
        native driver puts it there from the line's thread), its event published and the
        snapshot's waiters woken (and the reading given to ``each``) in trio when the driver
        hands it back: a failure at once, what trio has to do within
        ``handback.HAND_BACK_INTERVAL``, all before the round returns; a continuous reading
        trio has nothing to do for (no event, nobody waiting) is not handed back at all. A
        continuous round gives way to a reading cycle that starts on its line: it ends after
        the meter being read, returning the readings made so far."""
        if not meters:
            return []
        readings: list[MeterReading | None] = [None] * len(meters)
        name = meters[0].interface
        line = self.lines.get(name)
        ledger = self._ledger
        ledger.expect(meters)  # so that the line's thread records every reading of the round
        trio_clock = trio.lowlevel.current_clock()  # readable from a line's thread

        def prepare(k: int, reply: ReadReply | Exception) -> tuple[_Prepared, bool | None]:
            # where the meter was read (a line's thread): visible in the snapshot and its
            # health at once; then how soon trio must see it
            reading = meter_reading(meters[k], reply, self.clock.now())
            waited_for, recorded, event = ledger.enter(reading, trio_clock.current_time())
            urgent: bool | None = None
            if not reading.ok or (continuous and name in self._cycles):
                urgent = True  # a failure's event within the second; a cycle waits for the line
            elif waited_for or event is not None or not recorded or each is not None:
                urgent = False  # a task waits, a recovery's event, a cycle's list and progress
            else:
                readings[k] = reading  # all trio had to do: it is not handed back
            return (reading, recorded, event), urgent

        def settle(k: int, prepared: _Prepared) -> None:
            reading, recorded, event = prepared
            readings[k] = reading
            if not recorded:
                event = ledger.record(reading, True)[1]
            self._settle(event)
            if each is not None:
                each(reading)
            if continuous and name in self._cycles:
                raise _GiveWay

        if line is None:
            for k, meter in enumerate(meters):
                reading = readings[k] = self._unconfigured(meter)
                self._account(reading)
                if each is not None:
                    each(reading)
        else:
            try:
                await line.read_round(meters, settle, continuous=continuous, prepare=prepare)
            except _GiveWay:
                pass
            except Exception as exc:  # the round stopped: the meters it did not reach failed
                for k, reading in enumerate(readings):
                    if reading is None:
                        settle(k, prepare(k, exc)[0])  # a failure: trio has its event to send
        return [reading for reading in readings if reading is not None]

    def _unconfigured(self, meter: Meter) -> MeterReading:
        return MeterReading(
            meter,
            self.clock.now(),
            False,
            error=f"interface {meter.interface!r} is not configured",
        )

    def record(self, reading: MeterReading) -> None:
        """Account a reading that came another way (a wireless telegram) like one read here."""
        self._account(reading)

    def _account(self, reading: MeterReading) -> None:
        """In trio: all of a reading's accounting at once."""
        self._ledger.publish(reading, trio.current_time())
        self._settle(self._ledger.record(reading, True)[1])

    def _settle(self, event: Event | None) -> None:
        """In trio: what a reading leaves to do there: its event, and the snapshot's waiters."""
        if event is not None:
            self.events.publish(event)
        self.live.notify()

    async def read_cycle(
        self,
        meters: Iterable[Meter],
        store: ReadingSink | None = None,
        progress: CycleProgress | None = None,
    ) -> CycleResult:
        """Read the given meters once, the lines in parallel. With ``store``, the readings are
        committed before ``CYCLE_FINISHED`` is published, so a subscriber finds them stored.
        ``progress(read, total)`` counts this cycle's readings only. Continuous mode waits on
        a line while a cycle reads it (the cycle's values reach the snapshot all the same)."""
        started = self.clock.now()
        by_line: dict[str, list[Meter]] = {}
        for meter in meters:
            by_line.setdefault(meter.interface, []).append(meter)
        total = sum(len(line_meters) for line_meters in by_line.values())
        readings: list[MeterReading] = []

        async def read_line(name: str, line_meters: list[Meter]) -> None:
            def counted(reading: MeterReading) -> None:
                readings.append(reading)
                if progress is not None:
                    progress(len(readings), total)

            self._cycles[name] = self._cycles.get(name, 0) + 1
            try:
                await self.read_line(line_meters, each=counted)
            finally:
                self._cycles[name] -= 1
                if not self._cycles[name]:
                    del self._cycles[name]
                    self._line_free.set()
                    self._line_free = trio.Event()

        async with trio.open_nursery() as nursery:
            for name, line_meters in by_line.items():
                nursery.start_soon(read_line, name, line_meters)
        result = CycleResult(started, self.clock.now(), readings)
        if store is not None:
            result.not_stored = await store(readings)
        self.events.publish(
            Event(
                CYCLE_FINISHED,
                result.finished,
                None,
                {
                    "meters": len(readings),
                    "failed": len(result.failed),
                    "duration_s": (result.finished - result.started).total_seconds(),
                },
            )
        )
        return result

    async def run_continuous(
        self,
        meters_of_line: Callable[[str], list[Meter]],
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Continuous read mode: every line reads its active meters back to back, for ever.
        Values go to the snapshot only, never to the store."""
        async with trio.open_nursery() as nursery:
            for name in self.lines:
                nursery.start_soon(self._continuous_line, name, meters_of_line)
            task_status.started()

    async def _continuous_line(
        self, name: str, meters_of_line: Callable[[str], list[Meter]]
    ) -> None:
        while True:
            meters = meters_of_line(name)
            if not meters:
                await trio.sleep(1.0)  # nothing installed on this line yet
                continue
            while meters:
                while name in self._cycles:  # a full cycle reads this line: let it go first
                    await self._line_free.wait()
                done = await self.read_line(meters, continuous=True)
                meters = meters[len(done) :]
            await trio.sleep(0)  # let the scheduled cycle and the services in between
