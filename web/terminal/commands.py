"""The terminal's command language (docs/terminal.md), also the language of autoconfiguration
files: one command a line, ``#`` starts a comment line.

``parse`` turns a line into a ``Command`` (which level it needs is part of it); ``Commands``
carries one out on the gateway through the same operations as the REST API, so a change is
validated as there (all or nothing, every bad field named) and answers are the API's data,
written as text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mbusgw.gateway.errors import ReportError
from mbusgw.gateway.facade import GatewayHandle
from mbusgw.gateway.meters import COLUMNS
from mbusgw.gateway.settings import ConfigError
from mbusgw.gateway.terminal_settings import LEVELS
from mbusgw.web import device_ops
from mbusgw.web import operations as ops
from mbusgw.web.errors import ApiError, as_api_error
from mbusgw.web.values import latest_by_meter

MAX_LOG_LINES = 1000


class CommandError(ValueError):
    """A line that is no command, or a command used wrongly: the message says how to use it."""


@dataclass(frozen=True)
class Command:
    name: str  # as in the table below: "show values", "set", …
    args: tuple[str, ...]
    rest: str  # the text after the command's words, as typed (a setting's value, a CSV row)
    level: str  # the lowest level that may run it

    @property
    def text(self) -> str:
        return f"{self.name} {self.rest}".strip()


@dataclass(frozen=True)
class Spec:
    level: str
    usage: str
    summary: str
    max_args: int  # words after the command (the rest of the line counts as one)
    min_args: int = 0


# "session" commands belong to a terminal connection, not to a file
SPECS = {
    "help": Spec("read", "help", "this list", 0),
    "show status": Spec("read", "show status", "the device's state and its services", 0),
    "show meters": Spec("read", "show meters", "the installed meters and their health", 0),
    "show values": Spec(
        "read", "show values [meter]", "the latest stored values (of all meters or one)", 1
    ),
    "show logs": Spec("read", "show logs [count]", "the newest system log entries (20)", 1),
    "get": Spec("read", "get [path]", "a setting, a section or all, by dotted path", 1),
    "read": Spec("configure", "read <meter>", "read a wired meter now", 1, 1),
    "set": Spec("configure", "set <path> <value>", "change a setting (JSON or text value)", 2, 2),
    "install": Spec(
        "configure",
        f"install <{';'.join(COLUMNS[:4])};…>",
        "install (or update) a meter from a meter-list row",
        1,
        1,
    ),
    "remove": Spec("configure", "remove <meter>", "remove an installed meter", 1, 1),
    "report": Spec("configure", "report <name>", "read every meter, then send a report", 1, 1),
    "restart": Spec("administer", "restart", "restart the gateway", 0),
    "login": Spec("session", "login", "enter another level's password", 0),
    "quit": Spec("session", "quit", "end the session (also: exit, logout)", 0),
}
ALIASES = {"exit": "quit", "logout": "quit", "?": "help"}
SECURITY_SECTION = "terminal"  # changing the terminal's own access needs the top level


def parse(line: str) -> Command | None:
    """A line as a command; None for a blank or comment line; ``CommandError`` otherwise."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    first, _, after = text.partition(" ")
    name = ALIASES.get(first.lower(), first.lower())
    if name == "show":
        what, _, after = after.strip().partition(" ")
        name = f"show {what.lower()}".strip()
    spec = SPECS.get(name)
    if spec is None:
        raise CommandError(f"unknown command {text.split()[0]!r}; 'help' lists the commands")
    rest = after.strip()
    if name == "set":  # the value is the rest of the line, spaces and all
        path, _, value = rest.partition(" ")
        args: tuple[str, ...] = (path, value.strip()) if value.strip() else (path,)
    elif name == "install":  # a CSV row may hold spaces
        args = (rest,) if rest else ()
    else:
        args = tuple(rest.split())
    if not spec.min_args <= len(args) <= spec.max_args:
        raise CommandError(f"usage: {spec.usage}")
    level = spec.level
    if name == "set" and args[0].split(".")[0] == SECURITY_SECTION:
        level = "administer"
    return Command(name, args, rest, level)


def may(level: str | None, needed: str) -> bool:
    """Whether a session at ``level`` may run a command that needs ``needed``."""
    if needed == "session":
        return True
    return level is not None and LEVELS.index(level) >= LEVELS.index(needed)


def setting_change(gw: GatewayHandle, path: str, raw: str) -> dict[str, Any]:
    """``set``'s nested change from a dotted path and the value as typed: JSON where it reads
    as JSON, else the text itself; a text setting takes the text as typed (``set
    identity.device_name 123`` names the device "123")."""
    parts = path.split(".")
    if not all(parts):
        raise CommandError(f"{path!r} is not a dotted setting path")
    current = _walk(ops.get_settings(gw), parts)
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(current, str) and not isinstance(value, str) and value is not None:
        value = raw
    change: Any = value
    for part in reversed(parts):
        change = {part: change}
    return change


def _walk(data: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def error_text(exc: Exception) -> str:
    """An error as the terminal shows it: the API's message, each detail on a line of its own
    (every refused setting, every bad row of a meter list)."""
    error = None if isinstance(exc, CommandError) else as_api_error(exc)
    if error is None:
        if isinstance(exc, KeyError):
            return f"error: not found: {exc.args[0] if exc.args else ''}\n"
        return f"error: {exc}\n"
    details = error.details
    if isinstance(details, dict):
        lines = [f"  {where}: {message}" for where, message in details.items()]
    elif isinstance(details, list):  # rows of a meter list: the terminal's row is one line
        lines = [
            f"  {d.get('column') or 'row'}: {d.get('message')}" if isinstance(d, dict) else f"  {d}"
            for d in details
        ]
    else:
        lines = []
    return "".join(f"{line}\n" for line in [f"error: {error.message}", *lines])


class Commands:
    """Carries out parsed commands on a gateway; each answer is text ending with a newline."""

    def __init__(self, gateway: GatewayHandle, origin: str = "terminal") -> None:
        self.gw = gateway
        self.origin = origin
        self._run: dict[str, Callable[[Command], Any]] = {
            "help": self.help,
            "show status": self.show_status,
            "show meters": self.show_meters,
            "show values": self.show_values,
            "show logs": self.show_logs,
            "get": self.get,
            "read": self.read,
            "set": self.set,
            "install": self.install,
            "remove": self.remove,
            "report": self.report,
            "restart": self.restart,
        }

    async def run(self, command: Command) -> str:
        """The answer to ``command``; errors come back as text, nothing half done."""
        try:
            answer = self._run[command.name](command)
            if hasattr(answer, "__await__"):
                answer = await answer
            return answer
        except (ApiError, ConfigError, CommandError, KeyError, ValueError) as exc:
            return error_text(exc)

    def help(self, command: Command) -> str:
        width = max(len(spec.usage) for spec in SPECS.values())
        lines = [f"{spec.usage:<{width}}  {spec.summary} [{spec.level}]" for spec in SPECS.values()]
        return "\n".join(lines) + "\n"

    def show_status(self, command: Command) -> str:
        status = device_ops.device_status(self.gw)
        counts = " ".join(f"{name}={count}" for name, count in status["meters"].items())
        lines = [
            f"device {self.gw.settings.identity.device_name}: {status['status']}",
            f"meters: {counts}",
            "services:",
        ]
        for service in status["services"]:
            error = f" ({service['last_error']})" if service["last_error"] else ""
            lines.append(f"  {service['name']}: {service['state']}{error}")
        return "\n".join(lines) + "\n"

    def show_meters(self, command: Command) -> str:
        lines = []
        for meter in self.gw.meters:
            health = ops.health_of(self.gw, meter.key).status
            state = "active" if meter.active else "passive"
            lines.append(
                f"{meter.key}\t{meter.interface}\t{state}\t{health}\t{meter.position or ''}"
            )
        return "".join(line + "\n" for line in lines) or "no meters installed\n"

    def show_values(self, command: Command) -> str:
        keys = [m.key for m in self.gw.meters]
        if command.args:
            keys = [ops.find_meter(self.gw, command.args[0]).key]
        latest = latest_by_meter(self.gw, keys)
        out = []
        for key in keys:
            entry = latest.get(key)
            if entry is None:
                out.append(f"{key}: no values yet\n")
                continue
            out.append(f"{key} read {entry['read_at']}\n")
            for value in entry["values"]:
                invalid = " (invalid)" if value.get("invalid") else ""
                name = value["description"] or value["quantity"]
                out.append(f"  {value['series']} {name}: {value['value']} {value['unit']}")
                out.append(f"{invalid}\n")
        return "".join(out) or "no meters installed\n"

    def show_logs(self, command: Command) -> str:
        count = 20
        if command.args:
            if not command.args[0].isdigit() or not 1 <= int(command.args[0]) <= MAX_LOG_LINES:
                raise CommandError(f"the count is a number 1-{MAX_LOG_LINES}")
            count = int(command.args[0])
        entries = ops.system_log(self.gw, limit=count)["entries"]
        lines = [
            f"{e['time']} {e['level_name']:<7} {e['origin']}: {e['text']}"
            for e in reversed(entries)
        ]
        return "".join(line + "\n" for line in lines) or "the log is empty\n"

    def get(self, command: Command) -> str:
        data = ops.get_settings(self.gw)
        if command.args:
            parts = command.args[0].split(".")
            found = _walk(data, parts)
            if found is None:
                raise CommandError(f"no setting {command.args[0]!r}")
            data = found
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    async def read(self, command: Command) -> str:
        result = await ops.read_now(self.gw, command.args[0])
        if not result["ok"]:
            return f"error: reading {result['meter']} failed: {result['error']}\n"
        lines = [f"{result['meter']} read {result['read_at']}"]
        for value in result["values"]:
            name = value.get("description") or value.get("quantity")
            lines.append(f"  {name}: {value.get('value')} {value.get('unit') or ''}".rstrip())
        return "\n".join(lines) + "\n"

    async def set(self, command: Command) -> str:
        path, raw = command.args
        await ops.update_settings(self.gw, setting_change(self.gw, path, raw))
        self.gw.store.log.info(self.origin, f"setting {path} changed")
        return f"ok: {path} = {json.dumps(_walk(ops.get_settings(self.gw), path.split('.')))}\n"

    async def install(self, command: Command) -> str:
        header = ";".join(COLUMNS)
        result = await ops.install_meters(self.gw, f"{header}\n{command.args[0]}\n")
        keys = ", ".join(m["key"] for m in result.get("meters", [])) or "none"
        return f"ok: installed {keys}\n"

    async def remove(self, command: Command) -> str:
        return (await ops.remove_meter(self.gw, command.args[0]))["message"] + "\n"

    async def report(self, command: Command) -> str:
        try:
            outcome = await ops.report_service(self.gw).run_on_demand(command.args[0])
        except ReportError as exc:  # unknown, disabled or undeliverable: said as it is
            return f"error: {exc}\n"
        if not outcome.ok:
            return f"error: report {command.args[0]} not delivered: {outcome.error}\n"
        return f"ok: report {command.args[0]} sent with {outcome.values} value(s)\n"

    def restart(self, command: Command) -> str:
        return ops.stop_for(self.gw, "restart", origin=self.origin)["message"] + "\n"
