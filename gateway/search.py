"""Automatic and advanced meter search of the wired lines (manual 6.5.3, 6.21): the one
implementation, used by the web's jobs, the API and ``mbusgw search`` alike.

The lines of a search are scanned in parallel, each at its own rates (the line's own, or the
rates asked for), so a search of eight lines takes about as long as its slowest line. Its
progress is one overall share and estimate plus one entry per line (rate, share settled,
found, probes, estimated time left), updated after every probe.

Found meters are installed as they are found, a batch at a time (each batch one transaction of
the meter registry); a cancelled search installs what it had found before it ends, so nothing
found is lost. A search told not to install keeps what it found in the job, where
``install_found`` offers it later. The advanced search's number of meters (manual 6.21: "the
number of meters to install") ends the scans of every line as soon as that many are found;
finding fewer gives a warning. Meters over the capacity are installed passive, with a warning
naming them.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import trio

from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.errors import describe
from mbusgw.gateway.meters import AddressingMode, Merge, Meter, capacity_warning, meter_key
from mbusgw.gateway.scan import FoundMeter, MeterIdentity, Quota, ScanProgress, scan_lines

_ids = itertools.count(1)

Install = Callable[[Sequence[Meter]], Awaitable[Merge]]
"""Merges found meters into the installed list (those installed already stay as they are)."""


@dataclass(frozen=True)
class SearchRequest:
    mode: str = "secondary"  # primary | secondary
    interfaces: tuple[str, ...] = ()  # empty: every line
    bauds: tuple[int, ...] = ()  # empty: each line's own rate
    hex_digits: bool = False  # IDs may contain A-E (secondary)
    expected: int | None = None  # meters to find: stop once found, a warning when fewer
    install: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("primary", "secondary"):
            raise ValueError(f"search mode {self.mode!r} is neither primary nor secondary")
        if self.expected is not None and not 0 <= self.expected <= 4096:
            raise ValueError("the number of meters expected must be 0-4096")


@dataclass
class LineSearch:
    """One line of a search: where its scan is."""

    interface: str
    bauds: tuple[int, ...]  # the rates it is scanned at, in order
    state: str = "waiting"  # waiting | scanning | done | stopped
    scan: ScanProgress | None = None  # the latest report of the scan at the current rate
    found: int = 0  # meters found on this line

    @property
    def _rate(self) -> int:
        return self.bauds.index(self.scan.baud) if self.scan and self.scan.baud in self.bauds else 0

    @property
    def done(self) -> float:
        """The share of this line's address or ID space settled, over all its rates (below 1
        when the expected count or a cancel ended it early)."""
        settled = self.scan.done if self.scan else 0.0
        return (self._rate + settled) / len(self.bauds)

    @property
    def eta(self) -> float | None:
        """Seconds left on this line: the current rate's estimate plus a whole scan for each
        rate still to come, at the pace so far."""
        if self.state in ("done", "stopped"):
            return 0.0
        if self.scan is None or self.scan.eta is None or self.scan.done <= 0:
            return None
        whole = self.scan.elapsed / self.scan.done
        return self.scan.eta + whole * (len(self.bauds) - self._rate - 1)

    def as_dict(self) -> dict:
        scan = self.scan
        return {
            "interface": self.interface,
            "state": self.state,
            "baud": scan.baud if scan else self.bauds[0],
            "bauds": list(self.bauds),
            "done": round(self.done, 4),
            "eta_s": None if self.eta is None else round(self.eta, 1),
            "found": self.found,
            "probes": scan.probes if scan else 0,
            "current": scan.current if scan else "",
        }


@dataclass
class SearchJob:
    request: SearchRequest
    started: datetime
    id: str = field(default_factory=lambda: f"search-{next(_ids)}")
    state: str = "running"  # running | done | failed | cancelled
    lines: dict[str, LineSearch] = field(default_factory=dict)
    found: list[FoundMeter] = field(default_factory=list)  # in the order found
    installed: int = 0  # newly installed
    installed_keys: set[str] = field(default_factory=set)  # found and now in the list
    already_installed: list[str] = field(default_factory=list)  # found, left as they were
    passive: list[str] = field(default_factory=list)  # installed passive: over the capacity
    unresolved: list[str] = field(default_factory=list)
    error: str | None = None
    warning: str | None = None
    finished: datetime | None = None
    done_event: trio.Event = field(default_factory=trio.Event, repr=False)
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope, repr=False)
    _probes_before: int = field(default=0, repr=False)  # of the rates finished on each line

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def probes(self) -> int:
        return self._probes_before + sum(
            line.scan.probes for line in self.lines.values() if line.scan
        )

    @property
    def done(self) -> float:
        """The overall share done: the lines' mean, or the share of the meters expected
        found, whichever is further (the expected count ends every line)."""
        if self.state == "done":
            return 1.0
        lines = list(self.lines.values())
        share = sum(line.done for line in lines) / len(lines) if lines else 0.0
        expected = self.request.expected
        if expected:
            share = max(share, min(1.0, len(self.found) / expected))
        return share

    @property
    def eta(self) -> float | None:
        """Seconds left overall: the lines run in parallel, so the slowest line's."""
        if not self.running:
            return None
        etas = [line.eta for line in self.lines.values()]
        if not etas or any(eta is None for eta in etas):
            return None
        return max(eta for eta in etas if eta is not None)

    @property
    def not_installed(self) -> list[FoundMeter]:
        """What was found and is not in the meter list (a search told not to install, or one
        that failed while installing): offered to ``install_found``."""
        return [f for f in self.found if meter_from_found(f).key not in self.installed_keys]

    def message(self) -> str:
        """One line for a person watching the search."""
        lines = len(self.lines)
        if self.running:
            eta = f", about {self.eta:.0f} s left" if self.eta is not None else ""
            return f"{self.request.mode} search of {lines} line(s): {len(self.found)} found{eta}"
        text = f"found {len(self.found)} meter(s), installed {self.installed}"
        if self.already_installed:
            text += f", {len(self.already_installed)} already installed"
        expected = self.request.expected
        if expected and len(self.found) >= expected:
            text += f" (stopped: the {expected} expected were found)"
        if self.state == "cancelled":
            text += " (cancelled)"
        return text

    def result(self) -> dict:
        return {
            "found": len(self.found),
            "expected": self.request.expected or None,
            "installed": self.installed,
            "already_installed": self.already_installed,
            "passive": self.passive,
            "not_installed": [found.identity.id for found in self.not_installed],
            "unresolved": self.unresolved,
            "meters": [_found_dict(found) for found in self.found],
        }

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "mode": self.request.mode,
            "state": self.state,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "found": len(self.found),
            "probes": self.probes,
            "done": round(self.done, 4),
            "eta_s": None if self.eta is None else round(self.eta, 1),
            "expected": self.request.expected or None,
            "installed": self.installed,
            "already_installed": self.already_installed,
            "passive": self.passive,
            "error": self.error,
            "warning": self.warning,
            "lines": [line.as_dict() for line in self.lines.values()],
            "meters": [_found_dict(found) for found in self.found],
        }


def _found_dict(found: FoundMeter) -> dict:
    """A found meter without its telegram (a job is polled while it runs)."""
    identity = found.identity
    return {
        "id": identity.id,
        "manufacturer": identity.manufacturer,
        "version": identity.version,
        "medium": identity.medium,
        "interface": found.interface,
        "baud": found.baud,
        "primary": found.primary,
    }


def quota_for(expected: int | None) -> Quota | None:
    """The stop condition of a search for ``expected`` meters (none when it is unknown)."""
    return Quota(expected) if expected else None


def shortfall(expected: int | None, found: int) -> str | None:
    """The warning of a search that ended with fewer meters than expected."""
    if expected and found < expected:
        return f"{expected} meter(s) expected, only {found} found"
    return None


def meter_from_found(found: FoundMeter) -> Meter:
    """A found meter as the installer would enter it: by its ID (it is known from the reply),
    falling back to the primary address the scan found it at."""
    modes = (AddressingMode.SECONDARY,)
    if found.primary is not None:
        modes += (AddressingMode.PRIMARY,)
    identity = found.identity
    return Meter(
        key=meter_key(identity.id, found.interface, None),
        position=f"{identity.manufacturer} {identity.id}",
        secondary_address=identity.id,
        baud=found.baud,
        addressing=modes,
        primary_address=found.primary,
        interface=found.interface,
        manufacturer=identity.manufacturer,
        version=identity.version,
        medium=identity.medium,
    )


class _Installer:
    """Installs a search's meters as they come, a batch per registry change."""

    def __init__(self, job: SearchJob, install: Install) -> None:
        self._job = job
        self._install = install
        self._pending: list[FoundMeter] = []
        self._arrived = trio.Event()

    def add(self, found: FoundMeter) -> None:
        self._pending.append(found)
        self._arrived.set()

    async def run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Install what is waiting; shielded, so a cancelled search still installs what it
        found and the registry's change is never cut in half."""
        with trio.CancelScope(shield=True):
            while self._pending:
                batch, self._pending = self._pending, []
                merged = await self._install([meter_from_found(f) for f in batch])
                job = self._job
                job.installed += len(merged.added)
                job.installed_keys |= {m.key for m in (*merged.added, *merged.known)}
                job.already_installed += [m.key for m in merged.known]
                job.passive += merged.passive


def plan(job: SearchJob, buses: Mapping[str, BusMaster]) -> list[BusMaster]:
    """The lines ``job`` scans, each entered in its progress (waiting); ValueError for an
    interface that is not configured."""
    request = job.request
    unknown = set(request.interfaces) - set(buses)
    if unknown:
        raise ValueError(f"no such interface: {', '.join(sorted(unknown))}")
    chosen = [bus for name, bus in buses.items() if name in (request.interfaces or buses)]
    for bus in chosen:
        bauds = request.bauds or (bus.transport.baudrate,)
        job.lines.setdefault(bus.name, LineSearch(bus.name, tuple(bauds)))
    return chosen


async def run_search(
    job: SearchJob, buses: Mapping[str, BusMaster], install: Install, now: Callable[[], datetime]
) -> SearchJob:
    """Carry out ``job`` on ``buses`` (every line at once); found meters are installed through
    ``install`` as they are found, unless the request says not to. Cancelling ``job``'s cancel
    scope ends the scans; what was found by then is installed all the same."""
    request = job.request
    installer = _Installer(job, install) if request.install else None
    try:
        chosen = plan(job, buses)
        identities: set[MeterIdentity] = set()

        def progress(update: ScanProgress) -> None:
            line = job.lines[update.interface]
            if line.scan is not None and line.scan.baud != update.baud:
                job._probes_before += line.scan.probes  # a new rate: a new scan
            line.scan, line.state = update, "scanning"

        def found(meter: FoundMeter) -> None:
            if meter.identity in identities:  # the same meter at another rate or line
                return
            identities.add(meter.identity)
            job.found.append(meter)
            job.lines[meter.interface].found += 1
            if installer is not None:
                installer.add(meter)

        with job.cancel_scope:
            async with trio.open_nursery() as nursery:
                if installer is not None:
                    nursery.start_soon(installer.run)
                report = await scan_lines(
                    chosen,
                    request.mode,
                    bauds=request.bauds or None,
                    hex_digits=request.hex_digits,
                    progress=progress,
                    quota=quota_for(request.expected),
                    found=found,
                )
                nursery.cancel_scope.cancel()
        if job.cancel_scope.cancelled_caught:
            job.state = "cancelled"
        else:
            job.unresolved = report.unresolved
            job.state = "done"
        for line in job.lines.values():
            line.state = "done" if job.state == "done" else "stopped"
    except trio.Cancelled:
        job.state = "cancelled"
        raise
    except Exception as exc:
        job.state, job.error = "failed", describe(exc)
    finally:
        if installer is not None:
            try:
                await installer.flush()
            except Exception as exc:  # the search's own error, if any, comes first
                job.state, job.error = "failed", job.error or describe(exc)
        job.warning = _warning(job)
        job.finished = now()
        job.done_event.set()
    return job


def _warning(job: SearchJob) -> str | None:
    parts = []
    if job.state == "done":
        parts.append(shortfall(job.request.expected, len(job.found)))
    if job.unresolved:
        parts.append(
            f"{len(job.unresolved)} address(es) answered by meters that could not be told apart"
        )
    parts.append(capacity_warning(job.passive))
    return "; ".join(part for part in parts if part) or None


async def install_kept(job: SearchJob, install: Install) -> None:
    """Install what ``job`` found and did not install (a search told not to)."""
    installer = _Installer(job, install)
    for found in job.not_installed:
        installer.add(found)
    await installer.flush()
    job.warning = _warning(job)
