"""Wireless meters in the installation: re-install (bind each meter to the receiver hearing it
best), the wireless search (listen, then install what was heard), identities learnt from the
telegrams, and the built-in simulated radio's meters and keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import trio

from mbusgw.core.wmbus import MeterId
from mbusgw.gateway.keys import KeyEntry, KeyStore
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.parts import Shared
from mbusgw.gateway.read_service import ReadingService
from mbusgw.gateway.reading import MeterReading, ReadingPipeline
from mbusgw.gateway.registry import MeterRegistry
from mbusgw.gateway.settings import InterfaceConfig
from mbusgw.gateway.supervisor import INFO
from mbusgw.gateway.wireless import WirelessNetwork, wireless_meter

JsonObject = dict[str, object]


class WirelessInstaller:
    def __init__(
        self,
        network: WirelessNetwork,
        registry: MeterRegistry,
        shared: Shared,
        *,
        keys: KeyStore,
        store: Callable[[Sequence[MeterReading]], Awaitable[None]],
    ) -> None:
        self.network = network
        self.registry = registry
        self.keys = keys
        self.clock = shared.clock
        self._store = store
        self._log = shared.log

    @classmethod
    def open(
        cls,
        receivers: Sequence[InterfaceConfig],
        registry: MeterRegistry,
        shared: Shared,
        keys: KeyStore,
        pipeline: ReadingPipeline,
        reading: ReadingService,
        *,
        storing: bool,
    ) -> WirelessInstaller:
        """The wireless network of ``receivers``, its telegrams accounted like readings and,
        with ``storing``, stored in batches; the registry is told of it."""
        network = WirelessNetwork(
            receivers, keys=keys, clock=shared.clock, record=pipeline.record, storing=storing
        )
        network.set_meters(registry.meters)
        registry.wireless = network
        return cls(network, registry, shared, keys=keys, store=reading.store)

    async def reinstall(self, meter: str | None = None) -> JsonObject:
        """Re-install (manual 6.5.2): bind every installed wireless meter (or ``meter``) to
        the receiver that heard it best in the last hour, if that one is clearly stronger.
        Saved and written to the system log; returns what moved and what was not heard."""
        chosen = [m for m in self.registry.meters if m.wireless and meter in (None, m.key)]
        if meter is not None and not chosen:
            raise KeyError(meter)
        moves, silent = self.network.rebindings(chosen)
        moved = {move.meter: move.new for move in moves}
        if moves:
            await self.registry.change(lambda meters: [bound(m, moved.get(m.key)) for m in meters])
        for move in moves:
            self._log(INFO, "installation", f"re-install {move}")
        self._log(
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

    async def search(
        self,
        seconds: float,
        *,
        install: bool = True,
        progress: Callable[[float, int], None] | None = None,
    ) -> JsonObject:
        """The wireless search (manual 6.5.3): listen ``seconds``, then install the meters
        heard meanwhile, each bound to the receiver hearing it best. ``progress(done, found)``
        is told once a second."""
        network = self.network
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
            merged = await self.registry.install_found(
                [wireless_meter(m, network.best_for(m)) for m in new]
            )
            installed = len(merged.added)
        return {
            "found": len(heard),
            "new": len(new),
            "installed": installed,
            "meters": [m.to_dict() for m in heard],
        }

    async def store_batch(
        self, readings: Sequence[MeterReading], learned: dict[str, MeterId]
    ) -> None:
        """A wireless batch: readings stored as one; identities learnt from the telegrams (and
        a receiver for meters installed before any had heard them) saved with the meters."""
        await self._store(readings)
        if not learned:
            return
        network = self.network

        def learn(meters: list[Meter]) -> list[Meter]:
            out = []
            for meter in meters:
                heard = learned.get(meter.key)
                if heard is not None:
                    meter = replace(
                        bound(meter, None if meter.interface else network.best_for(heard)),
                        manufacturer=heard.manufacturer,
                        version=heard.version,
                        medium=heard.device_type,
                    )
                out.append(meter)
            return out

        await self.registry.change(learn)

    def simulated_meters(self) -> list[Meter]:
        """The meters of the built-in simulated radio, each bound to its strongest receiver."""
        if self.network.simulation is None:
            return []
        field = self.network.simulation.field
        names = list(self.network.receivers)
        return [
            wireless_meter(
                meter.meter_id,
                field.strongest(meter.identity.id, names),
                f"{meter.template.name} {meter.identity.id} (wireless)",
            )
            for meter in field.meters
            if meter.installed
        ]

    async def preload_simulated_keys(self) -> None:
        """The keys of the simulated encrypted meters, into a key store never used before
        (so keys a user removed do not come back)."""
        radio = self.network.simulation
        if radio is None or not self.keys.pristine:
            return
        entries = [
            KeyEntry(key, meter.id, meter.manufacturer, source="simulated wireless meters")
            for meter, key in radio.field.installer_keys()
        ]
        await self.keys.add_entries(entries, what="keys of the simulated wireless meters")


def bound(meter: Meter, receiver: str | None) -> Meter:
    """``meter`` bound to ``receiver`` (unchanged for None)."""
    if receiver is None:
        return meter
    return replace(meter, interface=receiver, enhanced_address=receiver)
