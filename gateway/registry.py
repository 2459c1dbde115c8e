"""The meter registry: the installed meters and every change to them.

Each change (a meter list installed, found meters merged in, a meter's settings, a removal, the
capacity) is made from the list the one before left and saved in one transaction, all or
nothing; the live snapshot forgets removed meters and listeners (the wireless network) see the
new list.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

import trio

from mbusgw.gateway import meters as installing
from mbusgw.gateway.installation import load_meters, replace_meters
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.parts import Shared
from mbusgw.gateway.store import Store
from mbusgw.gateway.supervisor import INFO, WARNING
from mbusgw.gateway.wireless import WirelessNetwork

MeterChange = Callable[[list[Meter]], list[Meter]]


class MeterRegistry:
    def __init__(self, shared: Shared, live: LiveSnapshot) -> None:
        self.meters: list[Meter] = []
        self.wireless: WirelessNetwork | None = None  # told of every new list
        self._writer = shared.writer
        self._settings = shared.settings
        self._live = live
        self._log = shared.log
        self._lock = trio.Lock()

    def load(self, store: Store) -> None:
        self.meters = load_meters(store)

    def meter(self, key: str) -> Meter | None:
        return next((m for m in self.meters if m.key == key), None)

    def active(self, interface: str | None = None) -> list[Meter]:
        return [
            m for m in self.meters if m.active and (interface is None or m.interface == interface)
        ]

    def wired(self) -> list[Meter]:
        """The active meters the gateway reads (wireless meters send on their own)."""
        return [m for m in self.meters if m.active and not m.wireless]

    async def change(self, change: MeterChange) -> list[Meter]:
        """Change the installed meter list and save it in one transaction, all or nothing;
        changes are made one at a time, each from the list the one before left. Meters it makes
        passive for want of capacity are named in a warning in the system log."""
        async with self._lock:
            meters = change(self.meters)
            gone = {m.key for m in self.meters} - {m.key for m in meters}
            passive = installing.over_capacity(self.meters, meters)
            await self._writer().submit(replace_meters(meters, gone))
            self.meters = meters
            warning = installing.capacity_warning(passive, self._settings().capacity)
            if warning is not None:
                self._log(WARNING, "installation", warning)
            self._live.forget(gone)
            if self.wireless is not None:
                self.wireless.set_meters(meters)
            return meters

    def installing(self, new: Sequence[Meter]) -> MeterChange:
        capacity = self._settings().capacity
        return lambda meters: installing.install(meters, new, capacity)

    async def install_meter_list(
        self, text: str, lines: Collection[str], interface: str | None = None
    ) -> list[Meter]:
        """Install a meter list (CSV); all or nothing. Returns the whole new meter list.

        Rows with ``EnhancedAddress`` ``wireless`` or a receiver's name are wireless meters
        (bound to the receiver hearing them best); the others go to the line their
        ``Interface`` names, else to ``interface`` (default: the first wired line)."""
        receivers = list(self.wireless.receivers) if self.wireless else []
        new = installing.parse_for_gateway(text, list(lines), receivers, interface)
        if self.wireless is not None:
            new = self.wireless.bind(new)
        meters = await self.change(self.installing(new))
        self._log(INFO, "installation", f"meter list installed: {len(new)} meter(s)")
        return meters

    async def update_meter(self, key: str, **changes: object) -> Meter:
        if self.meter(key) is None:
            raise KeyError(key)
        capacity = self._settings().capacity

        def change(meters: list[Meter]) -> list[Meter]:
            changed = [replace(m, **changes) if m.key == key else m for m in meters]  # type: ignore[arg-type]
            return installing.apply_capacity(changed, capacity)

        await self.change(change)
        updated = self.meter(key)
        if updated is None:
            raise KeyError(key)
        return updated

    async def remove_meters(self, keys: set[str]) -> None:
        await self.change(lambda meters: [m for m in meters if m.key not in keys])

    async def apply_capacity(self, capacity: int) -> None:
        await self.change(lambda meters: installing.apply_capacity(meters, capacity))

    async def install_simulated(self, found: Sequence[Meter]) -> None:
        """The meters of the built-in simulated bus and radio (no interface is configured)."""
        await self.change(self.installing(found))
        self._log(
            INFO,
            "installation",
            f"installed {len(found)} meter(s) of the built-in "
            "simulated bus and radio (no interface is configured)",
        )

    async def install_found(self, found: Sequence[Meter]) -> installing.Merge:
        """Add the meters a search found; those installed already keep their settings."""
        capacity = self._settings().capacity
        merges: list[installing.Merge] = []

        def merge(meters: list[Meter]) -> list[Meter]:
            merges.append(installing.merge_found(meters, found, capacity))
            return merges[-1].meters

        await self.change(merge)
        result = merges[-1]
        self._log(
            INFO,
            "search",
            f"search found {len(found)} meter(s): {len(result.added)} installed, "
            f"{len(result.known)} already installed",
        )
        return result
