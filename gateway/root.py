"""The composition root: the gateway as one supervised tree (STYLE.md) of small parts, each with
one job: ``MeterRegistry``, ``ReadingService``, ``WirelessInstaller``, ``NotSeenWatch``, the lines.

Lifetime, outermost first: the store writer → the supervisor with the simulators, bus masters,
wireless receivers, reading schedule, continuous mode, Modbus, compaction, retention, the
not-seen watch, push reports and the northbound services (``mbusgw.northbound`` entry points:
the web). ``stop()``: services that can finish on their own (the web answers the requests in
flight) get a grace period, then the rest is cancelled, the last wireless batch is stored, the
writer commits and the store is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from importlib.metadata import entry_points
from typing import Any

import trio

from mbusgw.gateway.clock import SystemClock, WallClock
from mbusgw.gateway.clock_watch import ClockWatch
from mbusgw.gateway.events import DEVICE_STARTED, SERVICE_RESTARTED, Event, EventBus
from mbusgw.gateway.facade import GatewayHandle
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.key_records import StoreKeyBackend
from mbusgw.gateway.keys import KeyStore
from mbusgw.gateway.licence import LicenceFiles
from mbusgw.gateway.lifecycle import AfterStop
from mbusgw.gateway.lines import BusLine, BusService, SimulatorService, meters_on, open_wired_lines
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.login_limit import LoginLimiter
from mbusgw.gateway.not_seen import NotSeenWatch
from mbusgw.gateway.owner import own
from mbusgw.gateway.parts import Shared
from mbusgw.gateway.read_service import ReadingService
from mbusgw.gateway.reading import ReadingPipeline
from mbusgw.gateway.registry import MeterRegistry
from mbusgw.gateway.search import SearchJob
from mbusgw.gateway.services.modbus import ModbusService, modbus_service
from mbusgw.gateway.services.mqtt.service import MqttService
from mbusgw.gateway.services.reports.service import ReportService
from mbusgw.gateway.services.snmp.objects import GatewayView, package_version
from mbusgw.gateway.services.snmp.service import SnmpService, uptime_since
from mbusgw.gateway.settings import EMBEDDED_DEFAULT, Settings, StartupConfig
from mbusgw.gateway.sntp import SntpCheck
from mbusgw.gateway.store import CompactionService, RetentionService, Store, StoreWriter, store_path
from mbusgw.gateway.supervisor import ERROR, INFO, FunctionService, Service, Supervisor
from mbusgw.gateway.wireless import WirelessNetwork
from mbusgw.gateway.wireless_install import WirelessInstaller

logger = logging.getLogger("mbusgw.gateway")

SHUTDOWN_GRACE = 10.0
NORTHBOUND = "mbusgw.northbound"  # entry points: factory(gateway) -> a supervised service
ServiceFactory = Callable[[GatewayHandle], Service]


class GatewayRoot:
    """Builds the tree and runs it (see the module note); ``Gateway`` adds the façade."""

    def __init__(
        self,
        startup: StartupConfig,
        *,
        clock: WallClock | None = None,
        background: bool = True,
        northbound: Sequence[ServiceFactory] | None = None,
    ) -> None:
        """``background=False`` runs only the lines and simulators (command-line tools such as a
        search); ``northbound``: default the installed ``mbusgw.northbound`` entry points."""
        self.startup = startup
        self.background = background
        self.clock = clock or SystemClock()
        self.live = LiveSnapshot()
        self.events = EventBus()
        self.health: dict[str, MeterHealth] = {}
        self.supervisor = Supervisor(self.log, on_restart=self._service_restarted)
        self.interfaces = startup.interfaces or EMBEDDED_DEFAULT
        self.simulators: dict[str, SimulatorService] = {}
        self.lines: dict[str, BusLine] = {}
        self.wireless: WirelessNetwork | None = None  # when receivers are configured
        self._keys: KeyStore | None = None
        self.store: Store | None = None  # set by run()
        self.writer: StoreWriter | None = None
        self.started_at: datetime | None = None
        self.ready = trio.Event()
        self._stopping = trio.Event()
        self.searches: dict[str, SearchJob] = {}
        self.modbus: ModbusService | None = None
        self.login_limiter = LoginLimiter()  # shared by the web and the terminal
        self.running_northbound: dict[str, object] = {}  # by name, once started
        self.licence: LicenceFiles | None = None  # set by run(): the optional licence file
        self.reports: ReportService | None = None  # push reports: status, test and on-demand
        self.snmp: SnmpService | None = None
        self.mqtt: MqttService | None = None
        self.after_stop: AfterStop | None = None  # what ``mbusgw run`` does once stopped
        # status and counters of northbound services that report them, by service name
        self.service_status: dict[str, Callable[[], dict[str, Any]]] = {}
        if northbound is None:
            northbound = [entry.load() for entry in entry_points(group=NORTHBOUND)]
        self.northbound = list(northbound)
        self.shared = Shared(self.clock, self.events, self.log, lambda: self.settings, self._writer)
        self.registry = MeterRegistry(self.shared, self.live)
        self.pipeline = ReadingPipeline(
            {}, self.clock, events=self.events, live=self.live, health=self.health
        )
        seed = str(startup.data_dir)  # spreads the random parts of the read schedule
        self.reading = ReadingService(
            self.pipeline,
            self.registry,
            self.shared,
            supervisor=self.supervisor,
            schedule_seed=seed,
        )
        self.not_seen = NotSeenWatch(
            self.registry, self.health, self.shared, lambda: self.started_at
        )
        self.wireless_installer: WirelessInstaller | None = None

    @property
    def settings(self) -> Settings:
        return self._store().settings

    @property
    def keys(self) -> KeyStore:
        """The wireless M-Bus key store (in the store; loaded at start)."""
        if self._keys is None:
            raise RuntimeError("the gateway is not running")
        return self._keys

    def log(self, level: int, origin: str, text: str) -> None:
        """Write to the system log (and the console); usable before the store opens."""
        python_level = {-1: logging.DEBUG, 0: logging.INFO, 1: logging.WARNING}.get(level, 40)
        logger.log(python_level, "%s: %s", origin, text)
        if self.store is not None:
            self.store.log.log(level, origin, text)

    def _service_restarted(self, name: str, reason: str) -> None:
        detail = {"service": name, "reason": reason}
        self.events.publish(Event(SERVICE_RESTARTED, self.clock.now(), None, detail))

    def _store(self) -> Store:
        if self.store is None:
            raise RuntimeError("the gateway is not running")
        return self.store

    def _writer(self) -> StoreWriter:
        if self.writer is None:
            raise RuntimeError("the gateway is not running")
        return self.writer

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the tree until ``stop()``; DataDirBusy when another process owns the data
        directory (the meter list has one writer: see ``gateway/owner.py``)."""
        startup = self.startup
        web = f"http://{startup.web_host}:{startup.web_port}" if self.northbound else None
        what = "a gateway" if self.background else "a command-line search"
        with own(startup.data_dir, what, web if self.background else None):
            await self._run(task_status)

    async def _run(self, task_status: Any) -> None:
        data_dir = self.startup.data_dir
        self.store = Store.open(store_path(data_dir), clock=self.clock)
        self.writer = StoreWriter(self.store)
        self.licence = LicenceFiles(data_dir)
        if self.licence.load() is None and self.licence.problem:
            self.log(ERROR, "licence", f"the stored licence is void: {self.licence.problem}")
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
                    # the web answers the requests in flight (a read may still need a line)
                    await self.supervisor.shutdown(SHUTDOWN_GRACE)
                    services.cancel_scope.cancel()
                with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_GRACE):
                    for line in self.lines.values():
                        await trio.aclose_forcefully(line.transport)  # free the serial ports
                    if self.wireless is not None and self.wireless_installer is not None:
                        await self.wireless.flush(self.wireless_installer.store_batch)
                        if self.wireless.simulation is not None:
                            await self.wireless.simulation.aclose()
                    self.log(INFO, "gateway", "stopped")
                    await self.writer.flush()
                outer.cancel_scope.cancel()
        finally:
            self.store.close()

    async def _start(self, services: trio.Nursery, *, task_status: Any) -> None:
        self.started_at = self.clock.now()
        self.registry.load(self._store())
        self.simulators, self.lines = open_wired_lines(self.interfaces, self.settings.mbus)
        self.pipeline.lines = dict(self.lines)
        receivers = [config for config in self.interfaces if config.wireless]
        if receivers:
            self.wireless_installer = installer = WirelessInstaller.open(
                receivers,
                self.registry,
                self.shared,
                self.keys,
                self.pipeline,
                self.reading,
                storing=self.background,
            )
            self.wireless = installer.network
            if self.background:
                await installer.preload_simulated_keys()
        simulated = self.simulators or (self.wireless and self.wireless.simulation)
        if not self.registry.meters and simulated and self.background:
            found = [meter for sim in self.simulators.values() for meter in meters_on(sim.line)]
            if self.wireless_installer is not None:
                found += self.wireless_installer.simulated_meters()
            await self.registry.install_simulated(found)
        await services.start(self.supervisor.run, self._services())
        self.events.publish(Event(DEVICE_STARTED, self.clock.now()))
        self.log(
            INFO,
            "gateway",
            f"started with {len(self.lines)} line(s) and "
            f"{len(self.registry.active())} active meter(s)",
        )
        self.ready.set()
        task_status.started()

    def _services(self) -> list[Service]:
        store_writer = self._writer()
        services: list[Service] = list(self.simulators.values())
        services += [BusService(line) for line in self.lines.values()]
        if self.wireless is not None:
            if self.wireless.simulation is not None:
                services.append(self.wireless.simulation)
            services.append(self.wireless.service)
        if not self.background:
            return services
        if self.wireless is not None and self.wireless_installer is not None:
            store_batches = partial(self.wireless.run_store, self.wireless_installer.store_batch)
            services.append(FunctionService("wireless-store", store_batches))
        self.modbus = modbus_service(self)
        # made before DEVICE_STARTED is published: it subscribes to the events when made
        self.reports = ReportService(
            store=self._store(),
            writer=store_writer,
            settings=lambda: self.settings,
            clock=self.clock,
            events=self.events,
            read_all=self.reading.read_all,
            meters=lambda: {meter.key: meter for meter in self.registry.meters},
        )
        services += [
            *self.reading.services(),
            self.modbus,
            CompactionService(store_writer),
            RetentionService(store_writer),
            self.not_seen,
            self.reports,
            ClockWatch(self.shared),
            SntpCheck(self.shared, seed=str(self.startup.data_dir)),
        ]
        self.snmp = SnmpService(
            lambda: self.settings.snmp, self._snmp_view(), self.events, self.log
        )
        self.mqtt = MqttService(
            lambda: self.settings.mqtt,
            self._snmp_view(),
            self._store(),
            store_writer,
            self.events,
            self.clock,
            self.log,
        )
        services += [self.snmp, self.mqtt]
        northbound = [factory(self) for factory in self.northbound]
        self.running_northbound = {service.name: service for service in northbound}
        services += northbound
        return services

    def _snmp_view(self) -> GatewayView:
        return GatewayView(
            device_name=lambda: self.settings.identity.device_name,
            version=package_version(),
            uptime_s=uptime_since(self.clock.now, lambda: self.started_at),
            meters=lambda: self.registry.meters,
            health=self.health,
            reports=lambda: self.reports.status() if self.reports is not None else [],
        )
