"""What the web interface needs from the running gateway (``gateway.app.Gateway``).

The web layer only reads these attributes and calls these operations; it never reaches into
bus masters or the store writer's internals, so it can be tested with the real gateway built
in a temporary directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.events import EventBus
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.keys import KeyStore
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.settings import Settings
from mbusgw.gateway.supervisor import Supervisor


class GatewayHandle(Protocol):
    settings: Settings
    store: Any  # gateway.store.Store: queries
    writer: Any  # gateway.store.StoreWriter: put_record / delete_record
    live: LiveSnapshot
    events: EventBus
    health: dict[str, MeterHealth]
    supervisor: Supervisor
    keys: KeyStore
    clock: WallClock
    data_dir: Path
    started_at: datetime

    @property
    def meters(self) -> Sequence[Meter]: ...

    async def install_meter_list(self, text: str) -> list[Meter]: ...

    async def update_settings(self, changes: dict[str, Any]) -> Settings: ...

    async def update_meter(self, key: str, changes: dict[str, Any]) -> Meter: ...

    async def remove_meters(self, keys: Sequence[str]) -> int: ...

    async def read_now(self, key: str | None = None) -> Any: ...

    def start_search(self, params: dict[str, Any]) -> Any: ...

    def jobs(self) -> Sequence[Any]: ...

    async def restart(self) -> None: ...

    async def factory_reset(self) -> None: ...

    async def restore_backup(self, path: Path) -> None:
        """Restore the checked backup file at ``path`` (close the store, replace, reopen)."""
        ...
