"""The reading service: "read all" and "read one", the read schedule (with its retries of the
meters that failed), the reading at start-up, continuous mode, and storing each cycle.

One cycle's readings go to the store as one batch; the decoded telegrams the pipeline made are
turned into stored rows here (no second decode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import trio

from mbusgw.core import ChecksumError, DecodeError, DecryptError, FrameError
from mbusgw.gateway import meters as installing
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.errors import Collision, DiskFull, NoResponse, StoreError, describe
from mbusgw.gateway.events import READINGS_STORED, Event
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.parts import Shared
from mbusgw.gateway.reading import (
    CycleProgress,
    CycleResult,
    MeterReading,
    ReadingPipeline,
    heard_identities,
)
from mbusgw.gateway.registry import MeterRegistry
from mbusgw.gateway.scheduler import JobFailed, ScheduledJob
from mbusgw.gateway.store import ReadingStatus, StoredReading
from mbusgw.gateway.store.telegrams import SeriesNames, reading_from_telegrams
from mbusgw.gateway.supervisor import ERROR, INFO, WARNING, FunctionService, Supervisor

# seconds between tries to store a cycle held by a full disk
DISK_RETRY_S = 30.0
# How a failed reading is written to the meter log, most specific first.
FAILURE_STATUS = (
    (NoResponse, ReadingStatus.NO_RESPONSE),
    (Collision, ReadingStatus.COLLISION),
    (ChecksumError, ReadingStatus.BAD_FRAME),
    (FrameError, ReadingStatus.BAD_FRAME),
    (DecryptError, ReadingStatus.DECRYPT_ERROR),
    (DecodeError, ReadingStatus.DECODE_ERROR),
)


class ReadingService:
    def __init__(
        self,
        pipeline: ReadingPipeline,
        registry: MeterRegistry,
        shared: Shared,
        *,
        supervisor: Supervisor,
        schedule_seed: str,
    ) -> None:
        self.pipeline = pipeline
        self.registry = registry
        self._writer = shared.writer
        self._settings = shared.settings
        self.clock = shared.clock
        self.events = shared.events
        self.supervisor = supervisor
        self._seed = schedule_seed
        self._log = shared.log
        self.last_cycle: CycleResult | None = None
        self.read_schedule: ScheduledJob | None = None
        self._names = SeriesNames()
        self._retry_meters: dict[datetime, list[Meter]] = {}
        self._read_at_start_done = False
        self.disk_retry_s = DISK_RETRY_S

    def services(self) -> list[FunctionService]:
        return [
            FunctionService("read-schedule", self._run_read_schedule),
            FunctionService("continuous", self._run_continuous),
        ]

    async def read_all(
        self, meters: Sequence[Meter] | None = None, progress: CycleProgress | None = None
    ) -> CycleResult:
        """Read (by default every active wired meter) and store the values: "read all &
        store". ``progress`` counts this cycle's readings (not those of continuous mode)."""
        chosen = self.registry.wired() if meters is None else meters
        result = await self.pipeline.read_cycle(
            chosen, store=self._store_when_room, progress=progress
        )
        # kept while the gateway runs: the outcome of each meter, without its frames and decoded
        # telegrams (the store and the snapshot hold those; 512 meters: about a megabyte)
        readings = [replace(r, frames=(), telegrams=()) for r in result.readings]
        self.last_cycle = replace(result, readings=readings)
        return result

    async def read_meter(self, key: str) -> MeterReading:
        """Read one meter now and store its values."""
        meter = self.registry.meter(key)
        if meter is None:
            raise KeyError(key)
        if meter.wireless:
            raise ValueError(f"meter {key} is wireless: it sends on its own and is not read")
        reading = await self.pipeline.read_one(meter)
        await self.store([reading])
        return reading

    async def _store_when_room(self, readings: Sequence[MeterReading]) -> dict[str, str]:
        """Store a cycle; on a full disk hold its readings and try again until there is room,
        so the cycle is stored late rather than lost (the next cycle waits for it)."""
        held = False
        while True:
            try:
                refused = await self.store(readings)
            except DiskFull as error:
                if not held:
                    held = True
                    self._log(
                        ERROR,
                        "store",
                        f"{error}; the {len(readings)} reading(s) of this cycle are held and "
                        "stored when there is room",
                    )
                await trio.sleep(self.disk_retry_s)
                continue
            if held:
                self._log(INFO, "store", f"room again: {len(readings)} held reading(s) stored")
            return refused

    async def store(self, readings: Sequence[MeterReading]) -> dict[str, str]:
        """Store readings as one batch; returns the meters whose reading was refused, and why."""
        rows = [self._row(reading) for reading in readings]
        if not rows:
            return {}
        receipt = await self._writer().put_readings(rows)
        refused = dict(receipt.refused)
        meters = [r.meter.key for r in readings if r.meter.key not in refused]
        self.events.publish(Event(READINGS_STORED, self.clock.now(), None, {"meters": meters}))
        await self._learn_identities(readings)
        return refused

    async def _learn_identities(self, readings: Sequence[MeterReading]) -> None:
        """Record on the meters what their good replies say they are, when it changed. The
        readings are stored already: a store that cannot take this now (a full disk) leaves it
        to the next good reading."""
        learnt = installing.learnt_identities(self.registry.meters, heard_identities(readings))
        if not learnt:
            return
        try:
            await self.registry.change(lambda meters: installing.with_identities(meters, learnt))
        except StoreError as error:
            self._log(WARNING, "installation", f"meter identities not recorded: {describe(error)}")

    def _row(self, reading: MeterReading) -> StoredReading:
        received_at = int(reading.read_at.timestamp())
        retries = max(reading.attempts - 1, 0)
        duration_ms = int(reading.duration * 1000)
        if reading.ok:
            return reading_from_telegrams(
                reading.meter.key,
                reading.telegrams,
                received_at,
                names=self._names,
                frames=reading.frames,
                duration_ms=duration_ms,
                retries=retries,
            )
        failure = reading.failure or Exception
        status = next(
            (code for kind, code in FAILURE_STATUS if issubclass(failure, kind)),
            ReadingStatus.OTHER_ERROR,
        )
        return StoredReading(
            reading.meter.key,
            received_at,
            frames=reading.frames,
            status=status,
            duration_ms=duration_ms,
            retries=retries,
            error=reading.error or "",
        )

    async def _scheduled_read(self, fire: datetime) -> None:
        meters = self._retry_meters.pop(fire, None) or self.registry.wired()
        for stale in [t for t in self._retry_meters if t < fire]:
            del self._retry_meters[stale]
        result = await self.read_all(meters)
        failed = [reading.meter for reading in result.failed]
        if failed:
            self._retry_meters[fire] = failed
            raise JobFailed(result.summary())

    async def _run_read_schedule(self, *, task_status: trio.TaskStatus[None]) -> None:
        settings = self._settings()
        if settings.reading.read_at_start and self.registry.wired():
            self._start_read_at_start()
        if not settings.reading.enabled:
            task_status.started()
            await trio.sleep_forever()
        job = ScheduledJob(
            "read-schedule",
            CronSchedule(settings.reading.schedule, seed=self._seed),
            self._scheduled_read,
            clock=self.clock,
            zone=ZoneInfo(settings.timezone),
            log=self._log,
            max_retries=settings.jobs.max_retries,
            retry_offset=settings.jobs.retry_offset_s,
        )
        self.read_schedule = job
        await job.run(task_status=task_status)

    def _start_read_at_start(self) -> None:
        if not self._read_at_start_done:
            self._read_at_start_done = True
            self.supervisor.start_soon(self._read_now_logged, name="read at start")

    async def _read_now_logged(self) -> None:
        result = await self.read_all()
        level = WARNING if result.failed else INFO
        self._log(level, "read-schedule", f"read at start: {result.summary()}")

    async def _run_continuous(self, *, task_status: trio.TaskStatus[None]) -> None:
        if not self._settings().reading.continuous:
            task_status.started()
            await trio.sleep_forever()
        self._log(INFO, "continuous", "continuous read mode on: values go to memory only")
        await self.pipeline.run_continuous(self.registry.active, task_status=task_status)
