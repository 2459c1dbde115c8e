"""What every part of the running gateway is given (the registry, the reading service, the
wireless installer, the not-seen watch): one object instead of the same five arguments each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.events import EventBus
from mbusgw.gateway.settings import Settings
from mbusgw.gateway.store import StoreWriter
from mbusgw.gateway.supervisor import LogFunction


@dataclass(frozen=True)
class Shared:
    """The clock, the events and the system log; the settings and the store writer are asked
    for each time (they exist once the gateway runs, and settings change)."""

    clock: WallClock
    events: EventBus
    log: LogFunction
    settings: Callable[[], Settings]
    writer: Callable[[], StoreWriter]
