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
from mbusgw.gateway.lifecycle import AfterStop
from mbusgw.gateway.lines import BusLine
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.meters import Merge, Meter
from mbusgw.gateway.reading import CycleResult, MeterReading
from mbusgw.gateway.scan import ScanProgress, scan_line
from mbusgw.gateway.search import meter_from_found, quota_for, shortfall
from mbusgw.gateway.services.reports.status import Outcome, ReportStatus
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

    async def read_all(self, meters: Sequence[Meter] | None = None) -> CycleResult: ...

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
    "MIB_NAME",
    "ModbusCounters",
    "ModbusView",
    "MqttControl",
    "Outcome",
    "RawTelegram",
    "ReportControl",
    "ReportStatus",
    "ScanProgress",
    "SnmpControl",
    "Store",
    "StoreWriter",
    "WirelessProgress",
    "backup_sealer",
    "create_backup",
    "meter_from_found",
    "mib_text",
    "open_serial_port",
    "parse_config",
    "private_dir",
    "quota_for",
    "read_backup_info",
    "render_config",
    "scan_line",
    "sheet_row",
    "shortfall",
    "value_flags",
    "write_private",
]
