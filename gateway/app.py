"""``Gateway``: the running gateway as its typed façade (``gateway/facade.py``) offers it to the
web and every northbound service. The tree itself is built and run by ``GatewayRoot``
(``gateway/root.py``, the composition root); each operation here is one part's job.
"""

from __future__ import annotations

from collections.abc import Sequence

from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.events import SETTINGS_CHANGED, Event
from mbusgw.gateway.facade import JsonObject, WirelessProgress
from mbusgw.gateway.licence import Licence
from mbusgw.gateway.meters import Merge, Meter
from mbusgw.gateway.reading import CycleProgress, CycleResult, MeterReading
from mbusgw.gateway.root import SHUTDOWN_GRACE, GatewayRoot
from mbusgw.gateway.search import SearchJob, SearchRequest, install_kept, plan, run_search
from mbusgw.gateway.services.reports.service import ReportService
from mbusgw.gateway.settings import EMBEDDED_DEFAULT, ConfigError, Settings
from mbusgw.gateway.settings_keys import changed_keys
from mbusgw.gateway.slave_settings import SLAVE_SERVICES
from mbusgw.gateway.supervisor import INFO, WARNING
from mbusgw.gateway.wireless_install import WirelessInstaller

__all__ = ["EMBEDDED_DEFAULT", "SHUTDOWN_GRACE", "Gateway"]

KEEP_SEARCHES = 20


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

    async def read_all(
        self, meters: Sequence[Meter] | None = None, progress: CycleProgress | None = None
    ) -> CycleResult:
        return await self.reading.read_all(meters, progress)

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
        """Start a search beside the running services; follow it with ``search_job``."""
        job = SearchJob(request, self.clock.now())
        plan(job, self._buses())  # an unknown line is refused here, the lines shown at once
        self._refuse_overlap(job)
        self._keep(job)
        self.supervisor.start_soon(self.search, request, job, name="search")
        return job

    def search_job(self, job_id: str) -> SearchJob | None:
        return self.searches.get(job_id)

    def cancel_search(self, job_id: str) -> SearchJob:
        """End a search; what it found by then is installed (or kept, if it installs nothing)."""
        job = self.searches[job_id]
        job.cancel_scope.cancel()
        return job

    async def install_search(self, job_id: str) -> SearchJob:
        """Install what a finished search found and kept (it was told not to install)."""
        job = self.searches[job_id]
        if job.running:
            raise ValueError(f"search {job_id} is still running")
        await install_kept(job, self.registry.install_found)
        return job

    async def search(self, request: SearchRequest, job: SearchJob | None = None) -> SearchJob:
        """Scan the lines and (by default) install what is found; returns when done."""
        if job is None:
            job = SearchJob(request, self.clock.now())
            try:
                plan(job, self._buses())
                self._refuse_overlap(job)
            except ValueError as exc:  # an unknown or busy line: the job fails, saying why
                job.state, job.error, job.finished = "failed", str(exc), self.clock.now()
                job.done_event.set()
                return job
        self._keep(job)
        await run_search(job, self._buses(), self.registry.install_found, self.clock.now)
        if job.warning:
            self.log(WARNING, "search", f"search {job.id}: {job.warning}")
        return job

    def _licensed_capacity(self, changes: JsonObject) -> None:
        """A capacity above the licence's is refused (ConfigError, nothing changes)."""
        licence = self.licence.licence if self.licence is not None else None
        if licence is None or "capacity" not in changes:
            return
        if self.settings.updated(changes).capacity > licence.capacity:
            raise ConfigError({"capacity": f"the licence allows at most {licence.capacity} meters"})

    async def install_licence(self, data: bytes) -> Licence:
        """Verify and keep a licence file; a capacity above the licence's comes down to it."""
        if self.licence is None:
            raise RuntimeError("the gateway is not running")
        licence = self.licence.install(data)
        if self.settings.capacity > licence.capacity:
            await self.update_settings({"capacity": licence.capacity})
        self.log(
            INFO,
            "licence",
            f"licence for {licence.licensee} installed: capacity {licence.capacity}, "
            f"features {', '.join(licence.features) or 'none named'}",
        )
        return licence

    def _buses(self) -> dict[str, BusMaster]:
        return {name: line.master for name, line in self.lines.items()}

    def _refuse_overlap(self, job: SearchJob) -> None:
        """One search per line at a time: two would only slow each other down."""
        for other in self.searches.values():
            shared = sorted(set(other.lines) & set(job.lines)) if other.running else []
            if shared:
                raise ValueError(f"{other.id} is searching {', '.join(shared)} already")

    def _keep(self, job: SearchJob) -> None:
        """Remember ``job`` with the last few searches (a finished one stays to be looked at)."""
        self.searches[job.id] = job
        for old in list(self.searches)[:-KEEP_SEARCHES]:
            if not self.searches[old].running:
                del self.searches[old]

    async def update_settings(self, changes: JsonObject) -> Settings:
        """Validate and store a settings change; restart only the services it touches."""
        self._licensed_capacity(changes)
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
        if "slave" in touched:
            restart += SLAVE_SERVICES
        if touched & ReportService.settings_sections:
            restart.append(ReportService.name)
        if before.terminal.listener() != after.terminal.listener():
            restart.append("terminal")  # its sessions end; passwords and limits apply live
        if "autoconfig" in touched:
            restart.append("autoconfig")
        if "time" in touched:
            restart.append("sntp-check")
        if "capacity" in touched:
            await self.registry.apply_capacity(after.capacity)
        self.supervisor.restart(sorted(set(restart)))
        if touched:
            keys = changed_keys(changes, before, after) or sorted(touched)
            self.log(INFO, "settings", f"changed: {', '.join(keys)}")
            detail = {"sections": sorted(touched)}
            self.events.publish(Event(SETTINGS_CHANGED, self.clock.now(), None, detail))
        return after
