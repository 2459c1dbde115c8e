"""One attempt at one report: select, render, deliver, and only then move the cursor.

``ReportRunner`` holds the collaborators every attempt needs (store, writer, settings, clock,
the installed meters) and the status of every report. The scheduling around it lives in
``service.py``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence

import trio

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.errors import UnknownReport, describe
from mbusgw.gateway.events import Event
from mbusgw.gateway.facade import INFO, WARNING, Store, StoreWriter
from mbusgw.gateway.report_catalog import layout_of, protocol_of
from mbusgw.gateway.report_checks import parse_period
from mbusgw.gateway.report_settings import ReportConfig
from mbusgw.gateway.services.reports.context import MeterIdentity, ReportContext
from mbusgw.gateway.services.reports.conventions import Conventions
from mbusgw.gateway.services.reports.cursors import Cursor, commit_cursor, load_cursor
from mbusgw.gateway.services.reports.receivers import delivery_for
from mbusgw.gateway.services.reports.schedule import last_fire, period_at
from mbusgw.gateway.services.reports.selection import AUTO_CYCLES, Selection, Window
from mbusgw.gateway.services.reports.status import Outcome, ReportStatus
from mbusgw.gateway.services.reports.templates import Rendered, render
from mbusgw.gateway.settings import Settings

HISTORY = 20  # attempts kept per report for the API
FALLBACK_READ_PERIOD_S = 900.0


class ReportRunner:
    def __init__(
        self,
        store: Store,
        writer: StoreWriter,
        settings: Callable[[], Settings],
        clock: WallClock,
        meters: Callable[[], Mapping[str, object]] | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.settings = settings
        self.clock = clock
        self.meters = meters
        self.statuses: dict[str, ReportStatus] = {}
        self.history: dict[str, deque[dict[str, object]]] = defaultdict(
            lambda: deque(maxlen=HISTORY)
        )
        self._locks: dict[str, trio.Lock] = defaultdict(trio.Lock)

    def log(self, level: int, name: str, text: str) -> None:
        self.store.log.log(level, f"report:{name}", text)

    # -- configuration ------------------------------------------------------------------------

    def config(self, name: str, settings: Settings, *kinds: str) -> ReportConfig:
        config = settings.reports.reports.get(name)
        if config is None:
            raise UnknownReport(f"no report {name!r} is configured")
        if kinds and config.kind not in kinds:
            raise UnknownReport(f"report {name!r} is a {config.kind} report, not {'/'.join(kinds)}")
        return config

    def status(self, name: str, settings: Settings | None = None) -> ReportStatus:
        """The report's status, refreshed from its settings and its stored cursor."""
        settings = settings or self.settings()
        status = self.statuses.get(name)
        if status is None:
            status = self.statuses[name] = ReportStatus(name)
            cursor = load_cursor(self.store, name)
            if cursor.delivered_at is not None:
                status.last_success = dt.datetime.fromtimestamp(cursor.delivered_at, dt.UTC)
            if cursor.until is not None:
                status.delivered_until = dt.datetime.fromtimestamp(cursor.until, dt.UTC)
        config = settings.reports.reports.get(name)
        if config is not None:
            status.kind, status.template, status.enabled = (
                config.kind,
                config.template,
                config.enabled,
            )
            status.protocol = protocol_of(config.template)
        return status

    # -- one attempt ----------------------------------------------------------------------------

    async def attempt(
        self, name: str, *, test: bool = False, events: Sequence[Event] = (), label: str = ""
    ) -> Outcome:
        """Render and deliver report ``name`` once; raises on failure (after noting it)."""
        settings = self.settings()
        config = self.config(name, settings)
        status = self.status(name, settings)
        async with self._locks[name]:
            now = self.clock.now()
            status.last_attempt, status.state = now, "sending"
            status.attempts += 1
            rendered: Rendered | None = None
            try:
                delivery = delivery_for(config, settings.reports)
                status.target = delivery.target
                rendered = await self.render(name, config, settings, now, test=test, events=events)
                reply = await delivery.deliver(rendered)
                refused = getattr(delivery, "refused", None)
                if refused:
                    self.log(WARNING, name, f"recipients refused: {'; '.join(refused)}")
                if config.kind != "event" and not test:
                    cursor = Cursor(rendered.cursors, _window_until(now), now.timestamp())
                    await commit_cursor(self.writer, name, cursor)
            except Exception as error:
                text = describe(error)
                values = rendered.values if rendered is not None else status.values_pending
                status.failures += 1
                status.last_error, status.values_pending, status.state = text, values, "idle"
                self._note(name, now, False, values, text, label)
                raise
            finally:
                if rendered is not None:
                    rendered.close()
            status.state, status.last_error, status.last_reply = "idle", None, reply
            if not test:
                status.last_success = now
                status.values_pending, status.values_delivered = 0, rendered.values
                if config.kind != "event":
                    status.delivered_until = dt.datetime.fromtimestamp(_window_until(now), dt.UTC)
            self._note(name, now, True, rendered.values, reply, label)
            return Outcome(True, rendered.values, reply)

    def _note(
        self, name: str, now: dt.datetime, ok: bool, values: int, text: str, label: str
    ) -> None:
        self.history[name].append(
            {"time": now.isoformat(), "ok": ok, "values": values, "detail": text}
        )
        what = f"{label}: " if label else ""
        # the label names the run and attempt, so repeated failures are never silenced as repeats
        if ok:
            self.log(INFO, name, f"{what}delivered {values} value(s) to the receiver ({text})")
        else:
            self.log(WARNING, name, f"{what}not delivered ({text}); {values} value(s) pending")

    # -- rendering ------------------------------------------------------------------------------

    async def render(
        self,
        name: str,
        config: ReportConfig,
        settings: Settings,
        now: dt.datetime,
        *,
        test: bool = False,
        events: Sequence[Event] = (),
    ) -> Rendered:
        """Render the report as it would go out now (in a worker thread)."""
        conventions = Conventions.of(settings)
        until = _window_until(now)
        if config.kind == "event":  # the window of an event report spans its events
            lower = min((int(e.at.timestamp()) for e in events), default=until - 1)
        else:
            lower = until - self.value_period(config, settings, now)
        window = Window(lower, until, config.value_interval)
        identities = {}
        if self.meters is not None and layout_of(config.template).number in (120, 130):
            identities = {key: MeterIdentity.of(m) for key, m in self.meters().items()}
        context = ReportContext(
            name,
            config.template,
            settings.identity.device_name,
            settings.identity.contact,
            conventions,
            int(now.timestamp()),
            window,
            identities,
            test,
        )
        if config.kind == "event":
            return await self.writer.offload(render, context, list(events))
        delivered = load_cursor(self.store, name).meters
        selection = Selection(self.store, window, conventions, delivered)
        rendered = await self.writer.offload(render, context, selection)
        if selection.late_meters and not test:
            self.log(
                WARNING,
                name,
                f"{selection.late_meters} meter(s) had undelivered values older than the value "
                "period; those were left out",
            )
        return rendered

    def value_period(self, config: ReportConfig, settings: Settings, now: dt.datetime) -> int:
        """Seconds the report reaches back: fixed, or "auto" = 180 cycles (see docs/reports.md)."""
        fixed = parse_period(config.value_period)
        if fixed is not None:
            return fixed
        zone = Conventions.of(settings).zone
        local = now.astimezone(zone)
        cycle = FALLBACK_READ_PERIOD_S
        if settings.reading.enabled:
            reading = CronSchedule(settings.reading.schedule)
            cycle = period_at(reading, last_fire(reading, local) or local)
        if config.kind == "scheduled":
            own = CronSchedule(config.schedule)
            cycle = max(cycle, period_at(own, last_fire(own, local) or local))
        return int(math.ceil(AUTO_CYCLES * cycle))


def _window_until(now: dt.datetime) -> int:
    """Readings received up to and including the current second."""
    return int(now.timestamp()) + 1
