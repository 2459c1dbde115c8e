"""The gateway program: the store, the lines, the reading pipeline and the services, as one
supervised tree (STYLE.md). ``Gateway`` is also the handle the web, the API and the services use
to reach the running gateway.

Lifetime, outermost first: the store writer (started first, stopped last) → the supervisor with
the simulators, the bus masters, the wireless receivers, the read schedule, continuous mode,
Modbus, the store's compaction and retention, and what else is configured. ``stop()`` lets it
all end cleanly: the services are cancelled, the last wireless batch is stored, then the writer
commits what it holds, then the store is closed.

Wired meters are read (on the schedule, on demand, continuously); wireless meters send on
their own and their telegrams arrive through ``gateway.wireless`` into the same store batches,
meter log, health, events and live snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import trio

from mbusgw.core import ChecksumError, DecodeError, DecryptError, FrameError
from mbusgw.core.wmbus import MeterId
from mbusgw.gateway import meters as installing
from mbusgw.gateway.clock import SystemClock, WallClock
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.errors import Collision, NoResponse
from mbusgw.gateway.events import (
    DEVICE_STARTED,
    METER_NOT_SEEN,
    READINGS_STORED,
    Event,
    EventBus,
)
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.installation import load_meters, replace_meters
from mbusgw.gateway.key_records import StoreKeyBackend
from mbusgw.gateway.keys import KeyEntry, KeyStore
from mbusgw.gateway.lifecycle import AfterStop
from mbusgw.gateway.lines import (
    BusLine,
    SimulatorService,
    meters_on,
    open_line,
    simulated_line,
)
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.reading import CycleResult, MeterReading, ReadingPipeline
from mbusgw.gateway.scheduler import JobFailed, ScheduledJob
from mbusgw.gateway.search import SearchJob, SearchRequest, run_search
from mbusgw.gateway.services.modbus import ModbusService, choose_source
from mbusgw.gateway.services.modbus_source import LiveSnapshotSource, ModbusSource
from mbusgw.gateway.services.modbus_stored import StoredValuesSource
from mbusgw.gateway.services.reports.service import ReportService
from mbusgw.gateway.settings import InterfaceConfig, Settings, StartupConfig
from mbusgw.gateway.store import (
    CompactionService,
    ReadingStatus,
    RetentionService,
    Store,
    StoredReading,
    StoreWriter,
    store_path,
)
from mbusgw.gateway.store.telegrams import SeriesNames, reading_from_telegrams
from mbusgw.gateway.supervisor import ERROR, INFO, WARNING, FunctionService, Supervisor
from mbusgw.gateway.wireless import WirelessNetwork, wireless_meter
from mbusgw.web.serve import WebService

logger = logging.getLogger("mbusgw.gateway")

# With no interface configured, the gateway runs on two simulated lines of a realistic mix and
# two simulated wireless receivers (an iM871A and an AMB8465) hearing four wireless meters,
# two of them encrypted, and a neighbour's meter.
EMBEDDED_DEFAULT = (
    InterfaceConfig(name="sim1", kind="simulator", baud=2400, meters=8),
    InterfaceConfig(name="sim2", kind="simulator", baud=2400, meters=8),
    InterfaceConfig(name="wmbus1", kind="simulated_receiver", protocol="im871a", meters=4),
    InterfaceConfig(name="wmbus2", kind="simulated_receiver", protocol="amb8465", meters=4),
)
SHUTDOWN_GRACE = 10.0
# How a failed reading is written to the meter log, most specific first.
FAILURE_STATUS = (
    (NoResponse, ReadingStatus.NO_RESPONSE),
    (Collision, ReadingStatus.COLLISION),
    (ChecksumError, ReadingStatus.BAD_FRAME),
    (FrameError, ReadingStatus.BAD_FRAME),
    (DecryptError, ReadingStatus.DECRYPT_ERROR),
    (DecodeError, ReadingStatus.DECODE_ERROR),
)


class Gateway:
    def __init__(
        self, startup: StartupConfig, *, clock: WallClock | None = None, background: bool = True
    ) -> None:
        """``background=False`` runs only the lines (and simulators): for command-line tools
        such as a search, which must not read on a schedule or open service ports."""
        self.startup = startup
        self.background = background
        self.searches: dict[int, SearchJob] = {}
        self._not_seen: set[str] = set()
        self.clock = clock or SystemClock()
        self.live = LiveSnapshot()
        self.events = EventBus()
        self.health: dict[str, MeterHealth] = {}
        self.supervisor = Supervisor(self.log)
        self.interfaces = startup.interfaces or EMBEDDED_DEFAULT
        self.simulators: dict[str, SimulatorService] = {}
        self.lines: dict[str, BusLine] = {}
        self.meters: list[Meter] = []
        self._meters_lock = trio.Lock()
        self.wireless: WirelessNetwork | None = None  # when receivers are configured
        self._keys: KeyStore | None = None
        self.store: Store | None = None
        self.writer: StoreWriter | None = None
        self.started_at: datetime | None = None
        self.last_cycle: CycleResult | None = None
        self.ready = trio.Event()
        self._stopping = trio.Event()
        self._names = SeriesNames()
        self._retry_meters: dict[datetime, list[Meter]] = {}
        self._read_at_start_done = False
        self.read_schedule: ScheduledJob | None = None
        self.modbus: ModbusService | None = None
        self.reports: ReportService | None = None  # push reports: status, test and on-demand
        self.after_stop: AfterStop | None = None  # what ``mbusgw run`` does once stopped
        self.pipeline = ReadingPipeline(
            {}, self.clock, events=self.events, live=self.live, health=self.health
        )

    # ------------------------------------------------------------------ state

    @property
    def settings(self) -> Settings:
        return self._store().settings

    def active_meters(self, interface: str | None = None) -> list[Meter]:
        return [
            m for m in self.meters if m.active and (interface is None or m.interface == interface)
        ]

    def wired_meters(self) -> list[Meter]:
        """The active meters the gateway reads (wireless meters send on their own)."""
        return [m for m in self.meters if m.active and not m.wireless]

    @property
    def keys(self) -> KeyStore:
        """The wireless M-Bus key store (in the store; loaded at start)."""
        if self._keys is None:
            raise RuntimeError("the gateway is not running")
        return self._keys

    def meter(self, key: str) -> Meter | None:
        return next((m for m in self.meters if m.key == key), None)

    def log(self, level: int, origin: str, text: str) -> None:
        """Write to the system log (and the console); usable before the store opens."""
        logger.log(
            {-1: logging.DEBUG, 0: logging.INFO, 1: logging.WARNING}.get(level, 40),
            "%s: %s",
            origin,
            text,
        )
        if self.store is not None:
            self.store.log.log(level, origin, text)

    def _store(self) -> Store:
        if self.store is None:
            raise RuntimeError("the gateway is not running")
        return self.store

    def _writer(self) -> StoreWriter:
        if self.writer is None:
            raise RuntimeError("the gateway is not running")
        return self.writer

    # ------------------------------------------------------------------ lifetime

    def stop(self) -> None:
        """Ask the gateway to shut down cleanly (signal handlers call this)."""
        self._stopping.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        data_dir = self.startup.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store.open(store_path(data_dir), clock=self.clock)
        self.writer = StoreWriter(self.store)
        self._keys = KeyStore(
            StoreKeyBackend(self.store, self.writer, lambda text: self.log(ERROR, "keys", text))
        )
        try:
            async with trio.open_nursery() as outer:
                await outer.start(self.writer.run)
                async with trio.open_nursery() as services:
                    await services.start(self._start, services)
                    task_status.started()
                    await self._stopping.wait()
                    services.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE
                    services.cancel_scope.cancel()
                with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_GRACE):
                    for line in self.lines.values():
                        await trio.aclose_forcefully(line.transport)  # free the serial ports
                    if self.wireless is not None:
                        await self.wireless.flush(self._store_wireless)
                        if self.wireless.simulation is not None:
                            await self.wireless.simulation.aclose()
                    self.log(INFO, "gateway", "stopped")
                    await self.writer.flush()
                outer.cancel_scope.cancel()
        finally:
            self.store.close()

    async def _start(self, services: trio.Nursery, *, task_status: Any) -> None:
        self.started_at = self.clock.now()
        self._load_meters()
        for index, config in enumerate(self.interfaces):
            if config.wireless:
                continue
            simulator = None
            if config.kind == "simulator":
                simulator = SimulatorService(simulated_line(config, seed=index + 1))
                self.simulators[config.name] = simulator
            line = open_line(config, simulator)
            line.mbus = self.settings.mbus
            self.lines[config.name] = line
        self.pipeline.lines = dict(self.lines)
        receivers = [config for config in self.interfaces if config.wireless]
        if receivers:
            self.wireless = WirelessNetwork(
                receivers,
                keys=self.keys,
                clock=self.clock,
                record=self.pipeline.record,
                storing=self.background,
            )
            self.wireless.set_meters(self.meters)
            if self.background:
                await self._preload_simulated_keys()
        simulated = self.simulators or (self.wireless and self.wireless.simulation)
        if not self.meters and simulated and self.background:
            await self._install_simulated_meters()
        await services.start(self.supervisor.run, self._services())
        self.events.publish(Event(DEVICE_STARTED, self.clock.now()))
        self.log(
            INFO,
            "gateway",
            f"started with {len(self.lines)} line(s) and "
            f"{len(self.active_meters())} active meter(s)",
        )
        self.ready.set()
        task_status.started()

    def _services(self) -> list[Any]:
        store_writer = self._writer()
        services: list[Any] = list(self.simulators.values())
        services += [_BusService(line) for line in self.lines.values()]
        if self.wireless is not None:
            if self.wireless.simulation is not None:
                services.append(self.wireless.simulation)
            services.append(self.wireless.service)
        if not self.background:
            return services
        if self.wireless is not None:
            store_batches = partial(self.wireless.run_store, self._store_wireless)
            services.append(FunctionService("wireless-store", store_batches))
        self.modbus = ModbusService(lambda: self.settings.modbus, self._modbus_source, self.clock)
        services += [
            FunctionService("read-schedule", self._run_read_schedule),
            FunctionService("continuous", self._run_continuous),
            self.modbus,
            CompactionService(store_writer),
            RetentionService(store_writer),
            FunctionService("not-seen-watch", self._watch_not_seen),
            self._report_service(store_writer),
            WebService(self, self.startup.web_host, self.startup.web_port),
        ]
        return services

    def _report_service(self, writer: StoreWriter) -> ReportService:
        # made before DEVICE_STARTED is published: it subscribes to the events when made
        self.reports = ReportService(
            store=self._store(),
            writer=writer,
            settings=lambda: self.settings,
            clock=self.clock,
            events=self.events,
            read_all=self.read_all,
            meters=lambda: {meter.key: meter for meter in self.meters},
        )
        return self.reports

    def _modbus_meters(self) -> list[Meter]:
        return self.meters

    def _modbus_source(self) -> ModbusSource:
        """Asked at every start of the Modbus service (a reading settings change restarts it)."""
        live = LiveSnapshotSource(self.live, self._modbus_meters, self.clock)
        stored = StoredValuesSource(self._store(), self._modbus_meters, self.clock, self.events)
        return choose_source(self.settings.reading.continuous, live, stored)

    # ------------------------------------------------------------------ meters

    def _load_meters(self) -> None:
        self.meters = load_meters(self._store())

    async def _change_meters(self, change: Callable[[list[Meter]], list[Meter]]) -> list[Meter]:
        """Change the installed meter list and save it in one transaction, all or nothing;
        changes are made one at a time, each from the list the one before left."""
        async with self._meters_lock:
            meters = change(self.meters)
            gone = {m.key for m in self.meters} - {m.key for m in meters}
            await self._writer().submit(replace_meters(meters, gone))
            self.meters = meters
            self.live.forget(gone)
            if self.wireless is not None:
                self.wireless.set_meters(meters)
            return meters

    def _installing(self, new: Sequence[Meter]) -> Callable[[list[Meter]], list[Meter]]:
        capacity = self.settings.capacity
        return lambda meters: installing.install(meters, new, capacity)

    async def _install_simulated_meters(self) -> None:
        found = [meter for sim in self.simulators.values() for meter in meters_on(sim.line)]
        radio = self.wireless.simulation if self.wireless else None
        if radio is not None:
            found += self._simulated_wireless_meters(radio.field)
        await self._change_meters(self._installing(found))
        self.log(
            INFO,
            "installation",
            f"installed {len(found)} meter(s) of the built-in "
            "simulated bus and radio (no interface is configured)",
        )

    def _simulated_wireless_meters(self, field: Any) -> list[Meter]:
        names = list(self.wireless.receivers) if self.wireless else []
        return [
            wireless_meter(
                meter.meter_id,
                field.strongest(meter.identity.id, names),
                f"{meter.template.name} {meter.identity.id} (wireless)",
            )
            for meter in field.meters
            if meter.installed
        ]

    async def _preload_simulated_keys(self) -> None:
        """The keys of the simulated encrypted meters, into a key store never used before
        (so keys a user removed do not come back)."""
        radio = self.wireless.simulation if self.wireless else None
        if radio is None or not self.keys.pristine:
            return
        entries = [
            KeyEntry(key, meter.id, meter.manufacturer, source="simulated wireless meters")
            for meter, key in radio.field.installer_keys()
        ]
        await self.keys.add_entries(entries, what="keys of the simulated wireless meters")

    async def install_meter_list(self, text: str, interface: str | None = None) -> list[Meter]:
        """Install a meter list (CSV); all or nothing. Returns the whole new meter list.

        Rows with ``EnhancedAddress`` ``wireless`` or a receiver's name are wireless meters
        (bound to the receiver hearing them best); the others go to ``interface`` (default:
        the first wired line)."""
        receivers = list(self.wireless.receivers) if self.wireless else []
        if interface is not None and interface not in self.lines:
            raise installing.MeterListError(
                [installing.RowError(1, None, f"interface {interface!r} is not configured")]
            )
        line = interface or next(iter(self.lines), "")
        new = installing.parse_meter_list(
            text,
            interface=line or "default",
            receivers=receivers,
            wireless_by_default=bool(receivers) and not self.lines,
        )
        unreachable = [m.key for m in new if not m.wireless and m.interface not in self.lines]
        if unreachable:
            raise installing.MeterListError(
                [
                    installing.RowError(
                        1, None, f"no wired M-Bus line is configured for {', '.join(unreachable)}"
                    )
                ]
            )
        if self.wireless is not None:
            new = self.wireless.bind(new)
        meters = await self._change_meters(self._installing(new))
        self.log(INFO, "installation", f"meter list installed: {len(new)} meter(s)")
        return meters

    async def update_meter(self, key: str, **changes: Any) -> Meter:
        if self.meter(key) is None:
            raise KeyError(key)
        capacity = self.settings.capacity

        def change(meters: list[Meter]) -> list[Meter]:
            changed = [replace(m, **changes) if m.key == key else m for m in meters]
            return installing.apply_capacity(changed, capacity)

        await self._change_meters(change)
        updated = self.meter(key)
        if updated is None:
            raise KeyError(key)
        return updated

    async def remove_meters(self, keys: set[str]) -> None:
        await self._change_meters(lambda meters: [m for m in meters if m.key not in keys])

    async def _install_found(self, found: Sequence[Meter]) -> int:
        known = {m.key for m in self.meters}
        await self._change_meters(self._installing(found))
        added = [m for m in found if m.key not in known]
        self.log(INFO, "search", f"search found {len(found)} meter(s), {len(added)} new")
        return len(added)

    # ------------------------------------------------------------------ wireless

    def _wireless_network(self) -> WirelessNetwork:
        if self.wireless is None:
            raise ValueError("no wireless M-Bus receiver is configured")
        return self.wireless

    async def reinstall_wireless(self, meter: str | None = None) -> dict[str, Any]:
        """Re-install (manual 6.5.2): bind every installed wireless meter (or ``meter``) to
        the receiver that heard it best in the last hour, if that one is clearly stronger.
        Saved and written to the system log; returns what moved and what was not heard."""
        network = self._wireless_network()
        chosen = [m for m in self.meters if m.wireless and meter in (None, m.key)]
        if meter is not None and not chosen:
            raise KeyError(meter)
        moves, silent = network.rebindings(chosen)
        moved = {move.meter: move.new for move in moves}
        if moves:
            await self._change_meters(lambda meters: [_bound(m, moved.get(m.key)) for m in meters])
        for move in moves:
            self.log(INFO, "installation", f"re-install {move}")
        self.log(
            INFO,
            "installation",
            f"re-install: {len(moves)} of {len(chosen)} wireless meter(s) moved to a stronger "
            f"receiver, {len(silent)} not heard in the last hour",
        )
        return {
            "meters": len(chosen),
            "moved": [move.as_dict() for move in moves],
            "not_heard": silent,
        }

    async def search_wireless(
        self,
        seconds: float,
        *,
        install: bool = True,
        progress: Callable[[float, int], None] | None = None,
    ) -> dict[str, Any]:
        """The wireless search (manual 6.5.3): listen ``seconds``, then install the meters
        heard meanwhile, each bound to the receiver hearing it best. ``progress(done, found)``
        is told once a second."""
        network = self._wireless_network()
        since = self.clock.now()
        end = trio.current_time() + seconds
        while (left := end - trio.current_time()) > 0:
            if progress is not None:
                progress(1 - left / seconds, len(network.heard_meter_ids(since)))
            await trio.sleep(min(1.0, left))
        heard = network.heard_meter_ids(since)
        new = [m for m in heard if network.installed(m) is None]
        installed = 0
        if install and new:
            installed = await self._install_found(
                [wireless_meter(m, network.best_for(m)) for m in new]
            )
        return {
            "found": len(heard),
            "new": len(new),
            "installed": installed,
            "meters": [m.to_dict() for m in heard],
        }

    async def _store_wireless(
        self, readings: Sequence[MeterReading], learned: dict[str, MeterId]
    ) -> None:
        """A wireless batch: readings stored as one; identities learnt from the telegrams (and
        a receiver for meters installed before any had heard them) saved with the meters."""
        await self._store_cycle(readings)
        if not learned or self.wireless is None:
            return
        network = self.wireless

        def learn(meters: list[Meter]) -> list[Meter]:
            out = []
            for meter in meters:
                heard = learned.get(meter.key)
                if heard is not None:
                    meter = replace(
                        _bound(meter, None if meter.interface else network.best_for(heard)),
                        manufacturer=heard.manufacturer,
                        version=heard.version,
                        medium=heard.device_type,
                    )
                out.append(meter)
            return out

        await self._change_meters(learn)

    def start_search(self, request: SearchRequest) -> SearchJob:
        """Start a search beside the running services; follow it in ``searches[job.id]``."""
        job = SearchJob(request, self.clock.now())
        self.searches[job.id] = job
        self.supervisor.start_soon(self.search, request, job)
        return job

    async def search(self, request: SearchRequest, job: SearchJob | None = None) -> SearchJob:
        """Scan the lines and (by default) install what is found; returns when done."""
        job = job or SearchJob(request, self.clock.now())
        self.searches[job.id] = job
        buses = {name: line.master for name, line in self.lines.items()}
        await run_search(job, buses, self._install_found, self.clock.now)
        if job.warning:
            self.log(WARNING, "search", f"search {job.id}: {job.warning}")
        return job

    async def _watch_not_seen(self, *, task_status: Any) -> None:
        task_status.started()
        while True:
            await trio.sleep(60)
            self.check_not_seen()

    def check_not_seen(self) -> list[str]:
        """Publish "meter not seen" once when an active meter has had no good reading for the
        configured time (counted from the start for a meter not read since); returns the keys
        newly reported."""
        limit = self.settings.reading.not_seen_after_min * 60
        if not limit:
            return []
        now = self.clock.now()
        reported = []
        for meter in self.active_meters():
            health = self.health.get(meter.key)
            last = health.last_good if health else None
            since = last or self.started_at
            if since is None or (now - since).total_seconds() < limit:
                self._not_seen.discard(meter.key)
            elif meter.key not in self._not_seen:
                self._not_seen.add(meter.key)
                reported.append(meter.key)
                detail = {"last_good": last.isoformat() if last else None}
                self.events.publish(Event(METER_NOT_SEEN, now, meter.key, detail))
                self.log(WARNING, meter.key, f"not read successfully for {limit // 60} min")
        return reported

    # ------------------------------------------------------------------ settings

    async def update_settings(self, changes: dict[str, Any]) -> Settings:
        """Validate and store a settings change; restart only the services it touches."""
        before = self.settings
        after = await self._writer().update_settings(changes)
        touched = after.changed_sections(before)
        for line in self.lines.values():
            line.mbus = after.mbus
        restart = []
        if touched & {"reading", "timezone"}:
            restart += ["read-schedule", "continuous", "modbus"]
        if "modbus" in touched:
            restart.append("modbus")
        if touched & ReportService.settings_sections:
            restart.append(ReportService.name)
        if "capacity" in touched:
            capacity = after.capacity
            await self._change_meters(lambda meters: installing.apply_capacity(meters, capacity))
        self.supervisor.restart(sorted(set(restart)))
        if touched:
            self.log(INFO, "settings", f"changed: {', '.join(sorted(touched))}")
        return after

    # ------------------------------------------------------------------ reading

    async def read_all(self, meters: Sequence[Meter] | None = None) -> CycleResult:
        """Read (by default every active wired meter) and store the values: "read all &
        store"."""
        chosen = self.wired_meters() if meters is None else meters
        result = await self.pipeline.read_cycle(chosen, store=self._store_cycle)
        self.last_cycle = result
        return result

    async def read_meter(self, key: str) -> MeterReading:
        """Read one meter now and store its values."""
        meter = self.meter(key)
        if meter is None:
            raise KeyError(key)
        if meter.wireless:
            raise ValueError(f"meter {key} is wireless: it sends on its own and is not read")
        reading = await self.pipeline.read_one(meter)
        await self._store_cycle([reading])
        return reading

    async def _store_cycle(self, readings: Sequence[MeterReading]) -> None:
        rows = [self._row(reading) for reading in readings]
        if rows:
            await self._writer().put_readings(rows)
            meters = [reading.meter.key for reading in readings]
            self.events.publish(Event(READINGS_STORED, self.clock.now(), None, {"meters": meters}))

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
        meters = self._retry_meters.pop(fire, None) or self.wired_meters()
        for stale in [t for t in self._retry_meters if t < fire]:
            del self._retry_meters[stale]
        result = await self.read_all(meters)
        failed = [reading.meter for reading in result.failed]
        if failed:
            self._retry_meters[fire] = failed
            raise JobFailed(f"{len(failed)} of {len(meters)} meter(s) were not read")

    async def _run_read_schedule(self, *, task_status: Any) -> None:
        settings = self.settings
        if settings.reading.read_at_start and self.wired_meters():
            self._start_read_at_start()
        if not settings.reading.enabled:
            task_status.started()
            await trio.sleep_forever()
        job = ScheduledJob(
            "read-schedule",
            CronSchedule(settings.reading.schedule, seed=str(self.startup.data_dir)),
            self._scheduled_read,
            clock=self.clock,
            zone=ZoneInfo(settings.timezone),
            log=self.log,
            max_retries=settings.jobs.max_retries,
            retry_offset=settings.jobs.retry_offset_s,
        )
        self.read_schedule = job
        await job.run(task_status=task_status)

    def _start_read_at_start(self) -> None:
        if not self._read_at_start_done:
            self._read_at_start_done = True
            self.supervisor.start_soon(self._read_now_logged)

    async def _read_now_logged(self) -> None:
        result = await self.read_all()
        level = WARNING if result.failed else INFO
        self.log(
            level,
            "read-schedule",
            f"read at start: {len(result.readings)} meter(s), {len(result.failed)} failed",
        )

    async def _run_continuous(self, *, task_status: Any) -> None:
        if not self.settings.reading.continuous:
            task_status.started()
            await trio.sleep_forever()
        self.log(INFO, "continuous", "continuous read mode on: values go to memory only")
        await self.pipeline.run_continuous(self.active_meters, task_status=task_status)


def _bound(meter: Meter, receiver: str | None) -> Meter:
    """``meter`` bound to ``receiver`` (unchanged for None)."""
    if receiver is None:
        return meter
    return replace(meter, interface=receiver, enhanced_address=receiver)


class _BusService:
    """The bus master of one line as a supervised service."""

    def __init__(self, line: BusLine) -> None:
        self.line = line
        self.name = f"bus:{line.name}"

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.line.master.run(task_status=task_status)
