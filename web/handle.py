"""What the web interface needs from the running gateway (``gateway.app.Gateway``).

The web layer reads these attributes and calls these operations; it never reaches into bus
masters' or the store writer's internals. Searches, "read all" and sending a push report now
run as jobs of the web (``web/jobs.py``; a wireless search listens through ``search_wireless``);
restart, factory reset and restoring a backup are asked of the gateway through ``after_stop``
(``gateway/lifecycle.py``) and happen between two runs, when the store is closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.events import EventBus
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.keys import KeyStore
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.meters import Merge, Meter
from mbusgw.gateway.settings import Settings, StartupConfig
from mbusgw.gateway.supervisor import Supervisor


class GatewayHandle(Protocol):
    startup: StartupConfig
    store: Any  # gateway.store.Store: queries and record tables
    writer: Any  # gateway.store.StoreWriter: put_record / delete_record / update_settings
    live: LiveSnapshot
    events: EventBus
    health: dict[str, MeterHealth]
    supervisor: Supervisor
    clock: WallClock
    started_at: datetime | None
    meters: list[Meter]
    lines: dict[str, Any]  # interface name → BusLine (its ``master`` scans)
    wireless: Any  # gateway.wireless.WirelessNetwork, or None without receivers
    after_stop: Any  # gateway.lifecycle.AfterStop | None
    reports: Any  # gateway.services.reports.ReportService | None (push reports)

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

    async def update_settings(self, changes: dict[str, Any]) -> Settings: ...

    async def update_meter(self, key: str, **changes: Any) -> Meter: ...

    async def remove_meters(self, keys: set[str]) -> None: ...

    async def read_all(self, meters: Sequence[Meter] | None = None) -> Any: ...

    async def read_meter(self, key: str) -> Any: ...

    async def reinstall_wireless(self, meter: str | None = None) -> dict[str, Any]:
        """Bind wireless meters to the receiver hearing them best; ValueError without
        receivers, KeyError for an unknown meter."""
        ...

    async def search_wireless(
        self, seconds: float, *, install: bool = True, progress: Any = None
    ) -> dict[str, Any]:
        """Listen, then install the wireless meters heard; ValueError without receivers."""
        ...

    def stop(self) -> None: ...
