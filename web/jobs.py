"""Long operations started from the web as jobs with progress: "read all & store", meter
searches (primary or secondary scans of each line, or listening to the wireless receivers;
found meters installed automatically) and sending a push report now (a test report, or an
on-demand report after reading every meter). A search for a number of meters expected stops
once that many are found and warns (job, API and system log) when it ends with fewer.

A job runs as a background task of the app; its state is polled through ``/api/v1/jobs/{id}``
and shown live on the job page. At most one job of each kind runs at a time, and the board keeps
the last ``KEEP`` jobs.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import trio

from mbusgw.gateway.errors import UnknownReport, describe
from mbusgw.gateway.facade import (
    GatewayHandle,
    ScanProgress,
    meter_from_found,
    quota_for,
    scan_line,
    shortfall,
)
from mbusgw.gateway.meters import BAUD_RATES, Meter
from mbusgw.web import audit
from mbusgw.web.errors import BadRequest, Conflict, NotFound
from mbusgw.web.readable import job_title

KEEP = 50
SCAN_KINDS = ("primary", "secondary")
WIRELESS_LISTEN_S = 120  # a wireless search listens this long unless told otherwise


@dataclass
class Job:
    id: str
    kind: str
    state: str = "queued"  # queued | running | done | failed | cancelled
    progress: float = 0.0
    found: int = 0
    expected: int | None = None  # searches: the number of meters expected
    message: str = ""
    warning: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    result: dict[str, Any] | None = None
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope, repr=False)

    @property
    def running(self) -> bool:
        return self.state in ("queued", "running")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": round(self.progress, 4),
            "found": self.found,
            "expected": self.expected,
            "message": self.message,
            "warning": self.warning,
            "started": self.started.isoformat(timespec="seconds") if self.started else None,
            "finished": self.finished.isoformat(timespec="seconds") if self.finished else None,
            "result": self.result,
        }


class JobBoard:
    def __init__(self, gateway: GatewayHandle, spawn: Callable[[Any], None]) -> None:
        self._gateway = gateway
        self._spawn = spawn
        self._jobs: list[Job] = []
        self._numbers = itertools.count(1)

    def all(self) -> list[Job]:
        return list(self._jobs)

    def get(self, job_id: str) -> Job | None:
        return next((job for job in self._jobs if job.id == job_id), None)

    def _start(
        self, kind: str, work: Callable[[Job], Awaitable[None]], expected: int | None = None
    ) -> Job:
        if any(job.running and job.kind == kind for job in self._jobs):
            raise Conflict(f"a {kind.replace('_', ' ')} job is running already")
        job = Job(f"{kind}-{next(self._numbers)}", kind, expected=expected)
        self._jobs = [*self._jobs, job][-KEEP:]
        log, who = self._gateway.store.log, audit.who()  # who: of the request starting it

        async def run() -> None:
            clock = self._gateway.clock
            job.state, job.started = "running", clock.now()
            log.info("web", f"job {job.id} started: {job_title(kind)}{who}")
            try:
                with job.cancel_scope:
                    await work(job)
                    job.state, job.progress = "done", 1.0
                if job.cancel_scope.cancelled_caught:
                    job.state = "cancelled"
            except Exception as exc:
                job.state, job.message = "failed", describe(exc)
                self._gateway.store.log.error("web", f"job {job.id} failed: {job.message}")
            finally:
                job.finished = clock.now()
                if job.state != "failed":  # a failure is logged as an error above
                    log.info("web", f"job {job.id} {job.state}: {job.message or job_title(kind)}")

        self._spawn(run)
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise BadRequest(f"no job {job_id!r}")
        job.cancel_scope.cancel()
        return job

    # -- read all & store

    def read_all(self) -> Job:
        gateway = self._gateway

        async def work(job: Job) -> None:
            meters = [m for m in gateway.meters if m.active and not m.wireless]
            begun = gateway.clock.now()

            def attempted() -> int:
                return sum(
                    1
                    for m in meters
                    if (h := gateway.health.get(m.key))
                    and h.last_attempt
                    and h.last_attempt >= begun
                )

            async with trio.open_nursery() as nursery:

                async def follow() -> None:
                    while True:
                        job.progress = attempted() / max(1, len(meters))
                        job.message = f"{attempted()} of {len(meters)} meters read"
                        await trio.sleep(0.5)

                nursery.start_soon(follow)
                result = await gateway.read_all()
                nursery.cancel_scope.cancel()
            failed = len(result.failed)
            job.found = len(result.readings) - failed
            job.message = result.summary()
            job.result = {"read": len(result.readings), "failed": failed}

        return self._start("read_all", work)

    # -- push reports

    def report(self, name: str, action: str) -> Job:
        """ "Send test" (the next report's values marked as a test; the cursor stays) or "send
        now" (an on-demand report: every meter read first) as a job; the receiver's answer or
        the error is the job's message."""
        service = self._gateway.reports
        if service is None:
            raise Conflict("the push-report service is not running")
        if action == "test":
            send, what, kinds = service.send_test, "test report", ()
        elif action == "run":
            send, what, kinds = service.run_on_demand, "report", ("on_demand",)
        else:
            raise BadRequest(f"unknown report action {action!r}")
        try:
            service.check(name, *kinds)
        except UnknownReport as exc:
            raise NotFound(str(exc)) from None

        async def work(job: Job) -> None:
            job.message = f"sending the {what} {name!r}"
            outcome = await send(name)  # DeliveryError, ReportError: the job failed, saying why
            job.message = f"{what} {name!r} delivered with {outcome.values} value(s): " + (
                outcome.reply or "accepted"
            )
            job.result = {"report": name, "values": outcome.values, "reply": outcome.reply}

        return self._start(f"report_{action}", work)

    # -- searches

    def scan(self, params: dict[str, Any]) -> Job:
        gateway = self._gateway
        kind = params.get("kind", "secondary")
        if kind == "wireless":
            return self._wireless_search(params)
        if kind not in SCAN_KINDS:
            raise BadRequest("unknown search kind", {"kind": f"one of {', '.join(SCAN_KINDS)}"})
        lines = params.get("interfaces") or list(gateway.lines)
        if not isinstance(lines, list) or any(
            not isinstance(name, str) or name not in gateway.lines for name in lines
        ):
            raise BadRequest(
                "unknown interface", {"interfaces": f"configured: {', '.join(gateway.lines)}"}
            )
        baud = params.get("baud")
        if baud is not None and baud not in BAUD_RATES:
            raise BadRequest("unknown baud rate", {"baud": "300, 2400 or 9600"})
        install = params.get("install", True)
        if not isinstance(install, bool):
            raise BadRequest("install must be true or false", {"install": "not a boolean"})
        expected = params.get("expected")
        if expected is not None and (
            not isinstance(expected, int) or isinstance(expected, bool) or not 0 <= expected <= 4096
        ):
            raise BadRequest(
                "the number of meters expected is a whole number 0-4096",
                {"expected": "0 (unknown) to 4096"},
            )
        expected = expected or None  # 0: unknown
        quota = quota_for(expected)

        async def work(job: Job) -> None:
            found_rows: dict[str, list[Meter]] = {}
            for index, name in enumerate(lines):
                if quota is not None and quota.met:
                    break

                def progress(update: ScanProgress, index: int = index, name: str = name) -> None:
                    job.progress = (index + update.done) / len(lines)
                    job.found = sum(len(r) for r in found_rows.values()) + update.found
                    eta = f", about {int(update.eta)} s left" if update.eta else ""
                    job.message = f"{name}: {update.mode} {update.current}{eta}"

                report = await scan_line(
                    gateway.lines[name].master,
                    kind,
                    bauds=[baud] if baud else None,
                    progress=progress,
                    quota=quota,
                )
                found_rows[name] = [meter_from_found(meter) for meter in report.found]
                job.found = sum(len(r) for r in found_rows.values())
            installed, known = 0, []
            found = [meter for meters in found_rows.values() for meter in meters]
            if install and found:
                merged = await gateway.install_found(found)
                installed, known = len(merged.added), [meter.key for meter in merged.known]
            job.message = f"found {job.found} meter(s), installed {installed}"
            if known:
                job.message += f", {len(known)} already installed"
            if quota is not None and quota.met:
                job.message += f" (stopped: the {expected} expected were found)"
            job.warning = shortfall(expected, job.found)
            if job.warning:
                gateway.store.log.warning("search", f"search {job.id}: {job.warning}")
            job.result = {
                "found": job.found,
                "expected": expected,
                "installed": installed,
                "already_installed": known,
            }

        return self._start(f"scan_{kind}", work, expected)

    def _wireless_search(self, params: dict[str, Any]) -> Job:
        gateway = self._gateway
        if gateway.wireless is None:
            raise BadRequest(
                "no wireless M-Bus receiver is configured", {"kind": "no receiver to listen to"}
            )
        seconds = params.get("duration_s", WIRELESS_LISTEN_S)
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= 3600:
            raise BadRequest("listen for 1-3600 seconds", {"duration_s": "1-3600"})
        install = params.get("install", True)
        if not isinstance(install, bool):
            raise BadRequest("install must be true or false", {"install": "not a boolean"})
        expected = params.get("expected")

        async def work(job: Job) -> None:
            def progress(done: float, found: int) -> None:
                job.progress, job.found = done, found
                left = seconds * (1 - done)
                job.message = f"listening: {found} meter(s) heard, {left:.0f} s left"

            result = await gateway.search_wireless(seconds, install=install, progress=progress)
            job.found = result["found"]
            job.message = (
                f"heard {result['found']} meter(s), {result['new']} not installed before, "
                f"installed {result['installed']}"
            )
            if isinstance(expected, int) and expected and result["found"] < expected:
                job.message += f"; {expected} expected"
            job.result = result

        return self._start("scan_wireless", work)
