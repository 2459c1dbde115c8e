"""Automatic and advanced meter search (manual 6.5.3, 6.21): scan the lines, install what is
found. A search runs as a job whose progress (found, probes, estimated time left) can be
followed while it runs; it can take many minutes on a real bus.

The advanced search's number of meters (manual 6.21: "the number of meters to install") ends
the search as soon as that many are found; finding fewer gives a warning. 0 or none: unknown,
the whole address space is searched."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import trio

from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.errors import describe
from mbusgw.gateway.meters import AddressingMode, Merge, Meter, meter_key
from mbusgw.gateway.scan import FoundMeter, Quota, ScanProgress, scan_lines

_ids = itertools.count(1)


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
class SearchJob:
    request: SearchRequest
    started: datetime
    id: int = field(default_factory=lambda: next(_ids))
    state: str = "running"  # running | done | failed | cancelled
    progress: dict[str, ScanProgress] = field(default_factory=dict)  # per line
    found: list[FoundMeter] = field(default_factory=list)
    installed: int = 0
    already_installed: list[str] = field(default_factory=list)  # found, left as they were
    error: str | None = None
    warning: str | None = None
    finished: datetime | None = None
    done_event: trio.Event = field(default_factory=trio.Event, repr=False)

    def as_dict(self) -> dict:
        progress = list(self.progress.values())
        return {
            "id": self.id,
            "mode": self.request.mode,
            "state": self.state,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            # the scans count meters as they find them; the list comes when they are done
            "found": len(self.found) if self.state != "running" else sum(p.found for p in progress),
            "probes": sum(p.probes for p in progress),
            "done": min((p.done for p in progress), default=0.0),
            "eta_s": max((p.eta for p in progress if p.eta is not None), default=None),
            "expected": self.request.expected or None,
            "installed": self.installed,
            "already_installed": self.already_installed,
            "error": self.error,
            "warning": self.warning,
            "meters": [meter.to_dict() for meter in self.found],
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


async def run_search(
    job: SearchJob,
    buses: dict[str, BusMaster],
    install: Callable[[Sequence[Meter]], Awaitable[Merge]],
    now: Callable[[], datetime],
) -> SearchJob:
    """Carry out ``job`` on ``buses``; found meters are installed through ``install`` (which
    leaves meters installed already as they are)."""
    request = job.request
    unknown = set(request.interfaces) - set(buses)
    try:
        if unknown:
            raise ValueError(f"no such interface: {', '.join(sorted(unknown))}")
        chosen = [
            bus
            for name, bus in buses.items()
            if not request.interfaces or name in request.interfaces
        ]

        def progress(update: ScanProgress) -> None:
            job.progress[update.interface] = update

        report = await scan_lines(
            chosen,
            request.mode,
            bauds=request.bauds or None,
            hex_digits=request.hex_digits,
            progress=progress,
            quota=quota_for(request.expected),
        )
        job.found = list(report.found)
        job.warning = shortfall(request.expected, len(job.found))
        if report.unresolved:
            job.warning = (job.warning + "; " if job.warning else "") + (
                f"{len(report.unresolved)} address(es) answered by meters that could not be "
                "told apart"
            )
        if request.install and job.found:
            merged = await install([meter_from_found(found) for found in job.found])
            job.installed = len(merged.added)
            job.already_installed = [meter.key for meter in merged.known]
        job.state = "done"
    except trio.Cancelled:
        job.state = "cancelled"
        raise
    except Exception as exc:
        job.state, job.error = "failed", describe(exc)
    finally:
        job.finished = now()
        job.done_event.set()
    return job
