"""``Gateway``: the running gateway as its typed façade (``gateway/facade.py``) offers it to the
web and every northbound service. The tree itself is built and run by ``GatewayRoot``
(``gateway/root.py``, the composition root); each operation here is one part's job.
"""

from __future__ import annotations

from collections.abc import Sequence

from mbusgw.gateway.events import SETTINGS_CHANGED, Event
from mbusgw.gateway.facade import JsonObject, WirelessProgress
from mbusgw.gateway.meters import Merge, Meter
from mbusgw.gateway.reading import CycleResult, MeterReading
from mbusgw.gateway.root import SHUTDOWN_GRACE, GatewayRoot
from mbusgw.gateway.search import SearchJob, SearchRequest, run_search
from mbusgw.gateway.services.reports.service import ReportService
from mbusgw.gateway.settings import EMBEDDED_DEFAULT, Settings
from mbusgw.gateway.settings_keys import changed_keys
from mbusgw.gateway.supervisor import INFO, WARNING
from mbusgw.gateway.wireless_install import WirelessInstaller

__all__ = ["EMBEDDED_DEFAULT", "SHUTDOWN_GRACE", "Gateway"]


class Gateway(GatewayRoot):
    def stop(self) -> None:
        """Ask the gateway to shut down cleanly (signal handlers call this)."""
        self._stopping.set()

    @property
    def meters(self) -> list[Meter]:
        return self.registry.meters

    @property
    def last_cycle(self) -> CycleResult | None:
        """The latest "read all" (scheduled, at start or on demand)."""
        return self.reading.last_cycle

    @property
    def disk_retry_s(self) -> float:
        """Seconds between tries to store a cycle held by a full disk."""
        return self.reading.disk_retry_s

    @disk_retry_s.setter
    def disk_retry_s(self, seconds: float) -> None:
        self.reading.disk_retry_s = seconds

    def meter(self, key: str) -> Meter | None:
        return self.registry.meter(key)

    def active_meters(self, interface: str | None = None) -> list[Meter]:
        return self.registry.active(interface)

    # ------------------------------------------------------------------ the façade's operations

    async def install_meter_list(self, text: str, interface: str | None = None) -> list[Meter]:
        return await self.registry.install_meter_list(text, self.lines, interface)

    async def update_meter(self, key: str, **changes: object) -> Meter:
        return await self.registry.update_meter(key, **changes)

    async def install_found(self, found: Sequence[Meter]) -> Merge:
        return await self.registry.install_found(found)

    async def remove_meters(self, keys: set[str]) -> None:
        await self.registry.remove_meters(keys)

    async def read_all(self, meters: Sequence[Meter] | None = None) -> CycleResult:
        return await self.reading.read_all(meters)

    async def read_meter(self, key: str) -> MeterReading:
        return await self.reading.read_meter(key)

    def _wireless(self) -> WirelessInstaller:
        if self.wireless_installer is None:
            raise ValueError("no wireless M-Bus receiver is configured")
        return self.wireless_installer

    async def reinstall_wireless(self, meter: str | None = None) -> JsonObject:
        return await self._wireless().reinstall(meter)

    async def search_wireless(
        self, seconds: float, *, install: bool = True, progress: WirelessProgress | None = None
    ) -> JsonObject:
        return await self._wireless().search(seconds, install=install, progress=progress)

    def check_not_seen(self) -> list[str]:
        return self.not_seen.check()

    def start_search(self, request: SearchRequest) -> SearchJob:
        """Start a search beside the running services; follow it in ``searches[job.id]``."""
        job = SearchJob(request, self.clock.now())
        self.searches[job.id] = job
        self.supervisor.start_soon(self.search, request, job, name="search")
        return job

    async def search(self, request: SearchRequest, job: SearchJob | None = None) -> SearchJob:
        """Scan the lines and (by default) install what is found; returns when done."""
        job = job or SearchJob(request, self.clock.now())
        self.searches[job.id] = job
        buses = {name: line.master for name, line in self.lines.items()}
        await run_search(job, buses, self.registry.install_found, self.clock.now)
        if job.warning:
            self.log(WARNING, "search", f"search {job.id}: {job.warning}")
        return job

    async def update_settings(self, changes: JsonObject) -> Settings:
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
            await self.registry.apply_capacity(after.capacity)
        self.supervisor.restart(sorted(set(restart)))
        if touched:
            keys = changed_keys(changes, before, after) or sorted(touched)
            self.log(INFO, "settings", f"changed: {', '.join(keys)}")
            detail = {"sections": sorted(touched)}
            self.events.publish(Event(SETTINGS_CHANGED, self.clock.now(), None, detail))
        return after
