"""The report service: scheduled, event and on-demand reports, test reports, and status.

``ReportService`` is a supervised service (``name``, ``run(*, task_status)``). While it runs,
each enabled scheduled report has a task that sleeps until its next time, waits for the
reading it reports on (predefined schedules), and makes an attempt with retries; each event
report has a task that gathers events for a few seconds and sends them as one report. The
methods for the API (``status``, ``send_test``, ``render_test``, ``run_on_demand``) work whether
or not the scheduling tasks run. The service subscribes to the event bus when it is made, so
no event published after that is missed, not even while it restarts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from mbusgw.gateway.clock import WallClock, sleep_until_wall
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.errors import ReportError, describe
from mbusgw.gateway.events import CYCLE_FINISHED, REPORT_FAILED, Event, EventBus
from mbusgw.gateway.facade import ERROR, WARNING, Store, StoreWriter
from mbusgw.gateway.report_catalog import EVENT_KINDS
from mbusgw.gateway.report_checks import split_events
from mbusgw.gateway.report_settings import ReportConfig
from mbusgw.gateway.services.reports.conventions import Conventions
from mbusgw.gateway.services.reports.retries import policy_for
from mbusgw.gateway.services.reports.runner import ReportRunner
from mbusgw.gateway.services.reports.schedule import (
    CycleTracker,
    is_synchronised,
    last_fire,
    period_at,
    report_schedule,
)
from mbusgw.gateway.services.reports.status import Outcome, ReportStatus
from mbusgw.gateway.services.reports.templates import Rendered
from mbusgw.gateway.settings import Settings

EVENT_HOLD_S = 10.0  # events arriving this close together go in one event report
MAX_EVENTS_PER_REPORT = 1000
MAX_PENDING_EVENTS = 10_000
EVENT_RETRY_S = 3600.0  # undelivered events are tried again with the next event, or after this


class ReportService:
    name = "reports"
    # a change in these settings sections needs the scheduling tasks started again
    settings_sections = frozenset({"reports", "reading", "timezone", "jobs", "conventions"})

    def __init__(
        self,
        *,
        store: Store,
        writer: StoreWriter,
        settings: Callable[[], Settings],
        clock: WallClock,
        events: EventBus,
        read_all: Callable[[], Awaitable[Any]] | None = None,
        meters: Callable[[], Mapping[str, object]] | None = None,
        event_hold_s: float = EVENT_HOLD_S,
    ) -> None:
        self.runner = ReportRunner(store, writer, settings, clock, meters)
        self.settings = settings
        self.clock = clock
        self.events = events
        self.read_all = read_all
        self.event_hold_s = event_hold_s
        self.cycles = CycleTracker()
        self._incoming = events.subscribe(buffer=4096)
        self._event_queues: dict[str, trio.MemorySendChannel[Event]] = {}
        self.dropped_events = 0

    # -- the API ------------------------------------------------------------------------------

    def status(self) -> list[ReportStatus]:
        """Every configured report's status (last attempt, last success, error, pending)."""
        settings = self.settings()
        return [self.runner.status(name, settings) for name in sorted(settings.reports.reports)]

    def check(self, name: str, *kinds: str) -> None:
        """UnknownReport unless ``name`` is a configured report (of one of ``kinds``, if given)."""
        self.runner.config(name, self.settings(), *kinds)

    def status_of(self, name: str) -> ReportStatus:
        settings = self.settings()
        self.runner.config(name, settings)
        return self.runner.status(name, settings)

    def history(self, name: str) -> list[dict[str, object]]:
        """The last attempts of a report (time, ok, values, reply or error)."""
        return list(self.runner.history.get(name, ()))

    async def send_test(self, name: str) -> Outcome:
        """ "Save & send test report": what the next report would carry, marked as a test, to
        the report's receiver. The cursor does not move. Raises ``DeliveryError`` on failure."""
        events = self._test_events(name)
        return await self.runner.attempt(name, test=True, events=events, label="test report")

    async def render_test(self, name: str) -> Rendered:
        """ "Save & download test report": the rendered file (``data()``; ``close()`` when done)."""
        settings = self.settings()
        config = self.runner.config(name, settings)
        return await self.runner.render(
            name, config, settings, self.clock.now(), test=True, events=self._test_events(name)
        )

    async def run_on_demand(self, name: str) -> Outcome:
        """Read all meters now, then send the on-demand report ``name`` (with retries)."""
        settings = self.settings()
        config = self.runner.config(name, settings, "on_demand")
        if not config.enabled:
            raise ReportError(f"report {name!r} is disabled")
        if self.read_all is None:
            raise ReportError("this gateway cannot read its meters on demand")
        status = self.runner.status(name, settings)
        status.state = "reading"
        try:
            await self.read_all()
        finally:
            status.state = "idle"
        outcome = await self._run(name, config, settings, label="on demand")
        if not outcome.ok:
            raise ReportError(f"report {name!r} was not delivered: {outcome.error}")
        return outcome

    def _test_events(self, name: str) -> list[Event]:
        return [Event("report_test", self.clock.now(), None, {"report": name})]

    # -- the service ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        settings = self.settings()
        self._event_queues = {}
        async with trio.open_nursery() as nursery:
            for name, config in sorted(settings.reports.reports.items()):
                self.runner.status(name, settings)
                if not config.enabled:
                    self.runner.statuses[name].state = "disabled"
                elif config.kind == "scheduled":
                    await nursery.start(self._scheduled, name, config, settings)
                elif config.kind == "event":
                    send, receive = trio.open_memory_channel[Event](MAX_PENDING_EVENTS)
                    self._event_queues[name] = send
                    nursery.start_soon(self._event_report, name, config, receive)
            nursery.start_soon(self._follow_events)
            task_status.started()

    async def _follow_events(self) -> None:
        async for event in self._incoming:
            if event.kind == CYCLE_FINISHED:
                self.cycles.finished(event.at)
                continue
            if event.kind not in EVENT_KINDS:
                continue  # internal events (readings stored ...) are not reported
            settings = self.settings()
            for name, send in self._event_queues.items():
                config = settings.reports.reports.get(name)
                if config is None or event.kind not in (split_events(config.events) or EVENT_KINDS):
                    continue
                try:
                    send.send_nowait(event)
                except trio.WouldBlock:
                    self.dropped_events += 1
                    self.runner.log(WARNING, name, f"too many events waiting; {event.kind} dropped")

    async def _scheduled(
        self,
        name: str,
        config: ReportConfig,
        settings: Settings,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        conventions = Conventions.of(settings)
        schedule = report_schedule(config.schedule, conventions.first_day_of_week, name)
        status = self.runner.status(name, settings)
        fire = schedule.next_after(self.clock.now().astimezone(conventions.zone))
        status.next_run = fire
        task_status.started()
        while True:
            status.next_run, status.state = fire, "idle"
            await sleep_until_wall(self.clock, fire)
            following = schedule.next_after(fire)
            if is_synchronised(config.schedule):
                await self._wait_for_reading(fire, following, settings, status)
            period = (following - fire).total_seconds()
            outcome = await self._run(
                name,
                config,
                settings,
                period=period,
                deadline=following,
                label=f"run {fire.isoformat()}",
            )
            if not outcome.ok:
                detail = {"report": name, "error": outcome.error}
                self.events.publish(Event(REPORT_FAILED, self.clock.now(), None, detail))
            now = self.clock.now().astimezone(conventions.zone)
            skipped = 0
            while following <= now:
                following = schedule.next_after(following)
                skipped += 1
            if skipped:
                self.runner.log(
                    WARNING,
                    name,
                    f"the run lasted until {now.isoformat()}; skipped {skipped} run(s)",
                )
            fire = following

    async def _wait_for_reading(
        self, fire: dt.datetime, following: dt.datetime, settings: Settings, status: ReportStatus
    ) -> None:
        """Wait for the reading cycle that started at or before ``fire`` to finish (its
        readings are committed by then: ``CYCLE_FINISHED`` follows the store's commit)."""
        reading = settings.reading
        if not reading.enabled or reading.continuous:
            return
        schedule = CronSchedule(reading.schedule)
        started = last_fire(schedule, fire)
        if started is None or self.cycles.finished_since(started):
            return
        deadline = min(following, started + dt.timedelta(seconds=period_at(schedule, started)))
        status.state = "waiting_for_reading"
        if not await self.cycles.wait_since(started, deadline, self.clock):
            self.runner.log(
                WARNING, status.name, "the reading did not finish in time; sending what is stored"
            )

    async def _run(
        self,
        name: str,
        config: ReportConfig,
        settings: Settings,
        *,
        period: float | None = None,
        deadline: dt.datetime | None = None,
        label: str = "",
        events: list[Event] | None = None,
    ) -> Outcome:
        """One report run: an attempt and its retries (none past ``deadline``, the next run)."""
        policy = policy_for(config, settings, period)
        attempts = policy.retries + 1
        status = self.runner.status(name, settings)
        failure = Outcome(False, 0, error="not attempted")
        for number in range(1, attempts + 1):
            try:
                return await self.runner.attempt(
                    name, events=events or (), label=f"{label}, attempt {number}/{attempts}"
                )
            except Exception as error:
                failure = Outcome(False, status.values_pending, error=describe(error))
            if number == attempts:
                break
            retry_at = self.clock.now() + dt.timedelta(seconds=policy.offset_s)
            if deadline is not None and retry_at >= deadline:
                self.runner.log(WARNING, name, "no time to retry before the next run")
                break
            status.state = "retrying"
            await trio.sleep(policy.offset_s)
        status.state = "idle"
        self.runner.log(
            ERROR, name, f"{label}: not delivered; what it carried goes with the next report"
        )
        return failure

    async def _event_report(
        self, name: str, config: ReportConfig, receive: trio.MemoryReceiveChannel[Event]
    ) -> None:
        """Gather events for ``event_hold_s`` and send them as one report; keep the ones that
        could not be delivered for the next try (on the next event, or after an hour)."""
        settings = self.settings()
        pending: list[Event] = []
        while True:
            if pending:
                with trio.move_on_after(EVENT_RETRY_S):
                    pending.append(await receive.receive())
            else:
                pending.append(await receive.receive())
            with trio.move_on_after(self.event_hold_s):
                while len(pending) < MAX_EVENTS_PER_REPORT:
                    pending.append(await receive.receive())
            batch = pending[:MAX_EVENTS_PER_REPORT]
            outcome = await self._run(
                name, config, settings, label=f"{len(batch)} event(s)", events=batch
            )
            if outcome.ok:
                del pending[: len(batch)]
            elif len(pending) > MAX_PENDING_EVENTS:
                dropped = len(pending) - MAX_PENDING_EVENTS
                del pending[:dropped]
                self.runner.log(WARNING, name, f"{dropped} undelivered event(s) dropped")
