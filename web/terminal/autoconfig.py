"""Service ``autoconfig``: fetch a file of terminal commands on a cron schedule and apply it
all or nothing (manual 6.31; docs/autoconfig.md).

A file (``.cad``) holds ``set``, ``install`` and ``remove`` lines, blank lines and ``#``
comments. Every line is checked before anything changes: the ``set`` lines are merged into one
settings change and validated as the API validates one, the ``install`` rows are parsed as one
meter list, the ``remove`` lines must name installed meters. One bad line refuses the whole
file, with every fault named by its line. A file identical to the last one applied is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import trio

from mbusgw.gateway.autoconfig_settings import AutoconfigSettings
from mbusgw.gateway.clock import sleep_until_wall
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.facade import GatewayHandle, client_context, write_private
from mbusgw.gateway.meters import COLUMNS, parse_for_gateway
from mbusgw.gateway.settings import ConfigError, without_masks
from mbusgw.web.terminal.commands import CommandError, error_text, parse, setting_change

log = logging.getLogger("mbusgw.autoconfig")

ORIGIN = "autoconfig"
MAX_FILE_BYTES = 1024 * 1024
APPLIED_FILE = "autoconfig-applied.json"  # in the data directory: the last file applied
FILE_COMMANDS = ("set", "install", "remove")


class FetchError(Exception):
    """The file could not be fetched; the message says why."""


@dataclass
class AutoconfigStatus:
    last_fetch: datetime | None = None
    last_applied: datetime | None = None
    next_fetch: datetime | None = None
    result: str = "never"  # never | applied | unchanged | refused | fetch_failed
    error: str | None = None
    applied_sha256: str | None = None  # of the last file applied
    changes: list[str] = field(default_factory=list)  # of the last file applied
    refused: dict[str, str] = field(default_factory=dict)  # line → why, of the last refusal

    def as_dict(self) -> dict[str, Any]:
        def when(moment: datetime | None) -> str | None:
            return moment.isoformat(timespec="seconds") if moment else None

        return {
            "last_fetch": when(self.last_fetch),
            "last_applied": when(self.last_applied),
            "next_fetch": when(self.next_fetch),
            "result": self.result,
            "error": self.error,
            "applied_sha256": self.applied_sha256,
            "changes": list(self.changes),
            "refused": dict(self.refused),
        }


@dataclass
class Plan:
    """A checked file: what it changes, in the order it is applied."""

    settings: dict[str, Any] = field(default_factory=dict)
    rows: list[str] = field(default_factory=list)  # meter-list rows to install
    removals: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the commands, for the log (no values)


def _merge(into: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def check_file(gw: GatewayHandle, text: str) -> Plan:
    """The file's plan; ``ConfigError`` names every bad line (``line N``) or setting, and
    nothing has changed."""
    plan = Plan()
    errors: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        try:
            command = parse(line)
            if command is None:
                continue
            if command.name not in FILE_COMMANDS:
                raise CommandError(f"{command.name!r} cannot be used in a file")
            if command.name == "set":
                _merge(plan.settings, setting_change(gw, *command.args))
            elif command.name == "install":
                plan.rows.append(command.args[0])
            elif command.args[0] not in {m.key for m in gw.meters}:
                raise CommandError(f"no meter {command.args[0]!r} is installed")
            else:
                plan.removals.append(command.args[0])
            # a set line's value may be a password: the log and status name the setting only
            plan.lines.append(f"set {command.args[0]}" if command.name == "set" else command.text)
        except CommandError as exc:
            errors[f"line {number}"] = str(exc)
    if plan.settings:
        try:
            gw.settings.updated(without_masks(plan.settings))
        except ConfigError as exc:
            errors.update(exc.errors)
    if plan.rows:
        receivers = list(gw.wireless.receivers) if gw.wireless is not None else []
        try:
            parse_for_gateway(_meter_list(plan.rows), list(gw.lines), receivers, None)
        except ValueError as exc:
            errors["install"] = str(exc)
    if errors:
        raise ConfigError(errors)
    return plan


def _meter_list(rows: list[str]) -> str:
    return "\n".join([";".join(COLUMNS), *rows]) + "\n"


async def apply_plan(gw: GatewayHandle, plan: Plan) -> None:
    """Apply a checked plan: the settings in one change, the meters as one list."""
    if plan.settings:
        await gw.update_settings(without_masks(plan.settings))
    if plan.rows:
        await gw.install_meter_list(_meter_list(plan.rows))
    if plan.removals:
        await gw.remove_meters(set(plan.removals))


async def fetch(settings: AutoconfigSettings, context: ssl.SSLContext) -> bytes:
    """The file at the configured URL (2xx only, no redirects, at most ``MAX_FILE_BYTES``)."""
    import httpx  # imported when needed: a gateway without autoconfiguration never loads it

    basic = settings.auth == "basic"
    auth = httpx.BasicAuth(settings.username, settings.password) if basic else None
    verify: ssl.SSLContext | bool = context if settings.url.lower().startswith("https:") else False
    try:
        async with (
            httpx.AsyncClient(
                verify=verify, timeout=httpx.Timeout(settings.timeout_s), follow_redirects=False
            ) as client,
            client.stream("GET", settings.url, auth=auth) as response,
        ):
            if response.status_code != 200:
                raise FetchError(f"{settings.url}: HTTP {response.status_code}")
            data = b""
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_FILE_BYTES:
                    raise FetchError(f"{settings.url}: larger than {MAX_FILE_BYTES} bytes")
            return data
    except httpx.HTTPError as exc:
        raise FetchError(f"{settings.url}: {type(exc).__name__}: {exc}") from None


class AutoconfigService:
    name = "autoconfig"

    def __init__(self, gateway: GatewayHandle) -> None:
        self.gateway = gateway
        self.status = AutoconfigStatus()
        self._applied_file = gateway.startup.data_dir / APPLIED_FILE
        self._load_applied()

    def _load_applied(self) -> None:
        """What was applied before a restart: an unchanged file stays skipped."""
        try:
            applied = json.loads(self._applied_file.read_text(encoding="utf-8"))
            self.status.applied_sha256 = applied["sha256"]
            self.status.last_applied = datetime.fromisoformat(applied["at"])
            self.status.changes = list(applied["changes"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:  # applied again next time
            log.warning("%s unreadable (%s); the next file is applied", self._applied_file, exc)

    def _save_applied(self, digest: str, at: datetime, changes: list[str]) -> None:
        record = {"sha256": digest, "at": at.isoformat(), "changes": changes}
        write_private(self._applied_file, json.dumps(record).encode())

    def _log(self, level: str, text: str) -> None:
        getattr(self.gateway.store.log, level)(ORIGIN, text)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        settings = self.gateway.settings
        if not settings.autoconfig.enabled:
            self.status.next_fetch = None
            task_status.started()
            await trio.sleep_forever()
        schedule = CronSchedule(
            settings.autoconfig.schedule, seed=str(self.gateway.startup.data_dir)
        )
        zone = ZoneInfo(settings.timezone)
        clock = self.gateway.clock
        fire = schedule.next_after(clock.now().astimezone(zone))
        task_status.started()
        while True:
            self.status.next_fetch = fire
            await sleep_until_wall(clock, fire)
            # shielded: a file that changes these settings restarts this service
            with trio.CancelScope(shield=True):
                await self.run_once()
            fire = schedule.next_after(max(fire, clock.now().astimezone(zone)))

    async def run_once(self) -> AutoconfigStatus:
        """Fetch and apply the file now; the status says what happened."""
        settings = self.gateway.settings
        status = self.status
        status.last_fetch = self.gateway.clock.now()
        try:
            data = await fetch(settings.autoconfig, self._context())
        except FetchError as exc:
            status.result, status.error = "fetch_failed", str(exc)
            self._log("error", f"fetch failed: {exc}")
            return status
        digest = hashlib.sha256(data).hexdigest()
        if digest == status.applied_sha256:
            status.result, status.error = "unchanged", None
            self._log("info", "file unchanged; skipped")
            return status
        try:
            plan = check_file(self.gateway, data.decode("utf-8"))
            await apply_plan(self.gateway, plan)
        except UnicodeDecodeError:
            return self._refused({"file": "not UTF-8 text"})
        except ConfigError as exc:
            return self._refused(exc.errors)
        except (ValueError, KeyError) as exc:  # a change the gateway refused after all
            return self._refused({"apply": error_text(exc).strip()})
        status.result, status.error, status.refused = "applied", None, {}
        status.applied_sha256, status.last_applied = digest, self.gateway.clock.now()
        status.changes = plan.lines
        self._save_applied(digest, status.last_applied, plan.lines)
        self._log("info", f"file applied: {'; '.join(plan.lines) or 'no commands'}")
        return status

    def _refused(self, errors: dict[str, str]) -> AutoconfigStatus:
        status = self.status
        status.result, status.refused = "refused", dict(errors)
        status.error = "the file was refused; nothing changed"
        why = "; ".join(f"{where}: {message}" for where, message in errors.items())
        self._log("error", f"file refused, nothing changed: {why}")
        return status

    def _context(self) -> ssl.SSLContext:
        reports = self.gateway.settings.reports
        return client_context(reports.trusted_certificates, system_trust=reports.system_trust)


def autoconfig_service(gateway: GatewayHandle) -> AutoconfigService:
    """Autoconfiguration as a northbound service (entry point ``mbusgw.northbound``)."""
    return AutoconfigService(gateway)
