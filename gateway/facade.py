"""The gateway as northbound services see it: the only module of the gateway's inside that the
web (REST, JSON-RPC, pages), and every later service, imports; beside it they use the data
model (settings, meters, events, health, errors, the store's value model) and ``core``.

``GatewayHandle`` is what a running gateway offers: meters and their installation, values and
series (the store's queries), the live snapshot, health, events, jobs (read, search, report),
settings, keys, users (the store's record tables), logs, and what happens after a stop. The
names below it are the operations and vocabulary those services call on, collected here so the
arrows from the north all end in one place (``tests/test_layers.py`` checks that they do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import trio

from mbusgw.gateway.cells import CsvWriter, sheet_row
from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.events import EventBus
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.keys import KeyFileError, KeyStore
from mbusgw.gateway.licence import Licence, LicenceError, LicenceFiles
from mbusgw.gateway.lifecycle import AfterStop
from mbusgw.gateway.lines import BusLine
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.login_limit import LoginLimiter
from mbusgw.gateway.meters import Merge, Meter
from mbusgw.gateway.reading import CycleProgress, CycleResult, MeterReading
from mbusgw.gateway.search import SearchJob, SearchRequest
from mbusgw.gateway.services.reports.status import Outcome, ReportStatus
from mbusgw.gateway.services.reports.tls import client_context
from mbusgw.gateway.services.snmp.objects import MIB_NAME, mib_text
from mbusgw.gateway.settings import Settings, StartupConfig
from mbusgw.gateway.store import LogFilter, RawTelegram, Store, StoreWriter, value_flags
from mbusgw.gateway.store.backup import HEADER_SIZE as BACKUP_HEADER_SIZE
from mbusgw.gateway.store.backup import backup_sealer, create_backup, read_backup_info
from mbusgw.gateway.store.configfile import MAX_FILE_BYTES as MAX_CONFIG_BYTES
from mbusgw.gateway.store.configfile import parse_config, render_config
from mbusgw.gateway.store.sealing import private_dir, write_private
from mbusgw.gateway.supervisor import ERROR, INFO, WARNING, Supervisor
from mbusgw.gateway.transport import open_serial
from mbusgw.gateway.wireless import WirelessNetwork

JsonObject = dict[str, object]
"""Settings changes and results as JSON objects."""

WirelessProgress = Callable[[float, int], None]
"""``progress(done, found)`` of a wireless search, told once a second."""

REPORT_CURSORS = "cursors"
"""The store's record table of the push reports' delivery cursors (one record per report)."""


class ReportControl(Protocol):
    """The push-report service as the web drives it: status, test and on-demand reports."""

    def status(self) -> list[ReportStatus]: ...

    def check(self, name: str, *kinds: str) -> None:
        """UnknownReport unless ``name`` is a configured report of one of ``kinds``."""
        ...

    async def send_test(self, name: str) -> Outcome: ...

    async def run_on_demand(self, name: str) -> Outcome: ...


class ModbusCounters(Protocol):
    """The Modbus server's counters since it started."""

    connections: int  # open now
    accepted: int
    refused: int
    requests: int
    exceptions: int
    closed_bad_frame: int
    closed_idle: int
    rtu_frames_ignored: int  # other slaves', broadcasts, bad CRC


class ModbusView(Protocol):
    """The running Modbus service as the web sees it."""

    @property
    def address(self) -> tuple[str, int] | None:
        """Where its TCP server listens (None while it is down)."""
        ...

    @property
    def stats(self) -> ModbusCounters | None:
        """Its counters (None while it is down)."""
        ...

    def map_csv(self) -> str:
        """The register map of the installed meters, as CSV."""
        ...


async def open_serial_port(device: str, baud: int) -> trio.abc.Stream:
    """A serial port opened at ``baud``, 8E1, as a byte stream (a service's slave port)."""
    return await open_serial(device, baud)


class SnmpControl(Protocol):
    """The SNMP agent as the web drives it."""

    def status(self) -> dict[str, object]: ...

    async def send_test(self) -> dict[str, bool]:
        """The test notification to every receiver; ValueError without receivers."""
        ...


class MqttControl(Protocol):
    """The MQTT publisher as the web shows it."""

    def status_dict(self) -> dict[str, object]: ...


class GatewayHandle(Protocol):
    startup: StartupConfig
    store: Store  # queries and record tables (users, keys, cursors ...)
    writer: StoreWriter  # put_record / delete_record / update_settings
    live: LiveSnapshot
    events: EventBus
    health: dict[str, MeterHealth]
    supervisor: Supervisor
    clock: WallClock
    started_at: datetime | None
    meters: list[Meter]
    lines: dict[str, BusLine]  # interface name → line (its ``master`` scans)
    wireless: WirelessNetwork | None  # None without receivers
    after_stop: AfterStop | None  # what ``mbusgw run`` does once stopped
    reports: ReportControl | None  # push reports (None while not running)
    modbus: ModbusView | None
    running_northbound: dict[str, object]  # the northbound services by name, once started
    login_limiter: LoginLimiter  # failed logins of every service (web, terminal) together
    licence: LicenceFiles | None  # the optional licence file (None while not running)
    service_status: dict[str, Callable[[], JsonObject]]  # northbound services' status, by name
    snmp: SnmpControl | None  # the SNMP agent and its notifications (None while not running)
    mqtt: MqttControl | None  # the MQTT publisher

    @property
    def keys(self) -> KeyStore:
        """The wireless M-Bus key store; changes are saved before they take effect."""
        ...

    @property
    def settings(self) -> Settings: ...

    async def install_meter_list(self, text: str, interface: str | None = None) -> list[Meter]:
        """Install a CSV meter list (all or nothing); returns the whole new meter list."""
        ...

    async def install_found(self, found: Sequence[Meter]) -> Merge:
        """Add the meters a search found; those installed already keep their settings."""
        ...

    async def update_settings(self, changes: JsonObject) -> Settings: ...

    async def update_meter(self, key: str, **changes: object) -> Meter: ...

    async def remove_meters(self, keys: set[str]) -> None: ...

    async def read_all(
        self, meters: Sequence[Meter] | None = None, progress: CycleProgress | None = None
    ) -> CycleResult:
        """Read and store; ``progress(read, total)`` counts this reading's meters only."""
        ...

    def start_search(self, request: SearchRequest) -> SearchJob:
        """Start a search of the wired lines (all at once); it installs as it finds."""
        ...

    def search_job(self, job_id: str) -> SearchJob | None: ...

    def cancel_search(self, job_id: str) -> SearchJob:
        """End a search; what it found is installed (or kept); KeyError for an unknown job."""
        ...

    async def install_search(self, job_id: str) -> SearchJob:
        """Install what a finished search kept; KeyError, ValueError while it runs."""
        ...

    async def read_meter(self, key: str) -> MeterReading: ...

    async def reinstall_wireless(self, meter: str | None = None) -> JsonObject:
        """Bind wireless meters to the receiver hearing them best; ValueError without
        receivers, KeyError for an unknown meter."""
        ...

    async def search_wireless(
        self, seconds: float, *, install: bool = True, progress: WirelessProgress | None = None
    ) -> JsonObject:
        """Listen, then install the wireless meters heard; ValueError without receivers."""
        ...

    async def install_licence(self, data: bytes) -> Licence:
        """Verify and keep a licence file; LicenceError says why one is refused."""
        ...

    def stop(self) -> None: ...


__all__ = [
    "BACKUP_HEADER_SIZE",
    "MAX_CONFIG_BYTES",
    "ERROR",
    "INFO",
    "REPORT_CURSORS",
    "WARNING",
    "AfterStop",
    "CsvWriter",
    "GatewayHandle",
    "JsonObject",
    "KeyFileError",
    "KeyStore",
    "LogFilter",
    "Licence",
    "LicenceError",
    "LoginLimiter",
    "MIB_NAME",
    "ModbusCounters",
    "ModbusView",
    "MqttControl",
    "Outcome",
    "RawTelegram",
    "ReportControl",
    "ReportStatus",
    "SearchJob",
    "SearchRequest",
    "SnmpControl",
    "Store",
    "StoreWriter",
    "WirelessProgress",
    "backup_sealer",
    "client_context",
    "create_backup",
    "mib_text",
    "open_serial_port",
    "parse_config",
    "private_dir",
    "read_backup_info",
    "render_config",
    "sheet_row",
    "value_flags",
    "write_private",
]
