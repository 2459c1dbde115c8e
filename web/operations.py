"""The operations of the API, shared by REST (``api_v1``), JSON-RPC (``jsonrpc``) and the pages.

Each takes the gateway and plain arguments and returns plain data (dicts, lists, str, int,
exact ``Decimal``), so the three front doors cannot disagree. Bad arguments raise the typed
errors of ``web.errors``; nothing is changed before every argument has been checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from mbusgw.gateway.facade import GatewayHandle
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.meters import (
    BAUD_RATES,
    AddressingMode,
    Meter,
    MultiTelegram,
    capacity_warning,
    parse_for_gateway,
    template_csv,
)
from mbusgw.gateway.settings import masked, without_masks
from mbusgw.web.errors import BadRequest, Conflict, NotFound
from mbusgw.web.plain import find_meter, iso, record_values
from mbusgw.web.values import latest_by_meter

LEVEL_NAMES = {-1: "debug", 0: "info", 1: "warning", 2: "error"}
MAX_LOG_ENTRIES = 10_000


# ---------------------------------------------------------------------------------- meters


def health_of(gw: GatewayHandle, key: str) -> MeterHealth:
    return gw.health.get(key) or MeterHealth(key)


METER_FIELD_NAMES = (
    "key",
    "position",
    "secondary_address",
    "primary_address",
    "enhanced_address",
    "baud",
    "addressing",
    "interface",
    "state",
    "enabled",
    "multi_telegram",
    "multi_telegram_limit",
    "key_linked",
    "manufacturer",
    "version",
    "medium",
    "timing",
    "wireless",
    "modbus_enabled",
    "health",
    "latest",
)


def modbus_enabled(gw: GatewayHandle, meter: Meter) -> bool:
    modbus = gw.settings.modbus
    per_meter = modbus.meters.get(meter.key)
    return modbus.enabled and (per_meter.enabled if per_meter else True)


def meter_dict(gw: GatewayHandle, meter: Meter, latest: dict | None = None) -> dict[str, Any]:
    return {
        "key": meter.key,
        "position": meter.position,
        "secondary_address": meter.secondary_address,
        "primary_address": meter.primary_address,
        "enhanced_address": meter.enhanced_address,
        "baud": meter.baud,
        "addressing": [str(mode) for mode in meter.addressing],
        "interface": meter.interface,
        "state": "active" if meter.active else "passive",
        "enabled": meter.enabled,
        "multi_telegram": str(meter.multi_telegram),
        "multi_telegram_limit": meter.multi_telegram_limit,
        "key_linked": meter.key_id is not None,
        "manufacturer": meter.manufacturer,
        "version": meter.version,
        "medium": meter.medium,
        "timing": dict(meter.timing),
        "wireless": meter.wireless,
        "modbus_enabled": modbus_enabled(gw, meter),
        "health": health_of(gw, meter.key).as_dict(),
        "latest": latest,
    }


METER_FIELDS = frozenset(METER_FIELD_NAMES)
# in every answer, whatever the fields asked for: the ``Meter`` schema requires them
METER_IDENTITY = frozenset(("key", "position", "state"))


def meter_fields(text: str | None) -> frozenset[str] | None:
    """The fields asked for (``fields=latest``) and the identity fields (``METER_IDENTITY``);
    None: all of them."""
    if not text:
        return None
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(names - METER_FIELDS)
    if unknown:
        raise BadRequest(
            f"no such meter field: {', '.join(unknown)}",
            {"fields": f"any of {', '.join(METER_FIELD_NAMES)}"},
        )
    return names | METER_IDENTITY


def list_meters(
    gw: GatewayHandle,
    passive: bool = True,
    offset: int = 0,
    limit: int | None = None,
    fields: frozenset[str] | None = None,
    latest: bool = True,
) -> dict[str, Any]:
    """The meters in list order, one page of them (``offset``, ``limit``) with the ``fields``
    asked for: the latest values and health are looked up for that page only. ``latest``
    False: without the newest values (the meter list page picks the one value it shows
    itself, ``readable.main_values``)."""
    page, counts = meter_page(gw, passive, offset, limit)
    wanted = latest and (fields is None or "latest" in fields)
    newest = latest_by_meter(gw, [m.key for m in page]) if wanted else {}
    rows = [meter_dict(gw, m, newest.get(m.key)) for m in page]
    if fields is not None:
        rows = [{name: row[name] for name in row if name in fields} for row in rows]
    return {"meters": rows, **counts}


def meter_page(
    gw: GatewayHandle, passive: bool = True, offset: int = 0, limit: int | None = None
) -> tuple[list[Meter], dict[str, Any]]:
    """One page of the meters in list order, and the counts a meter list answer gives after
    its ``meters``."""
    meters = gw.meters if passive else [m for m in gw.meters if m.active]
    page = list(meters[offset : None if limit is None else offset + limit])
    active = sum(1 for m in gw.meters if m.active)
    return page, {
        "total": len(gw.meters),
        "active": active,
        "passive": len(gw.meters) - active,
        "capacity": gw.settings.capacity,
        "offset": offset,
        "count": len(meters),
    }


def get_meter(gw: GatewayHandle, key: str) -> dict[str, Any]:
    meter = find_meter(gw, key)
    return meter_dict(gw, meter, latest_by_meter(gw, [key]).get(key))


def install_result(gw: GatewayHandle, installed: Sequence[Meter]) -> dict[str, Any]:
    """What an installation did; meters it left passive for want of capacity are named in a
    warning (the gateway's system log has it too)."""
    active = sum(1 for m in gw.meters if m.active)
    over = [m.key for m in installed if m.enabled and not m.active]
    return {
        "installed": len(installed),
        "active": active,
        "passive": len(gw.meters) - active,
        "meters": [meter_dict(gw, m) for m in installed],
        "over_capacity": over,
        "warning": capacity_warning(over, gw.settings.capacity),
    }


async def install_meters(
    gw: GatewayHandle, csv: str, interface: str | None = None
) -> dict[str, Any]:
    """Install a meter list; rows naming no ``Interface`` go to ``interface`` (default: the
    first wired line)."""
    if not isinstance(csv, str):
        raise BadRequest("the meter list must be CSV text")
    if interface is not None and not isinstance(interface, str):
        raise BadRequest("the interface is a line's name", {"interface": "not text"})
    receivers = list(gw.wireless.receivers) if gw.wireless is not None else []
    # the same check the gateway makes, for the rows' keys (their line is part of them)
    keys = {m.key for m in parse_for_gateway(csv, list(gw.lines), receivers, interface)}
    await gw.install_meter_list(csv, interface)
    return install_result(gw, [m for m in gw.meters if m.key in keys])


def meter_template() -> str:
    return template_csv()


TIMING_NAMES = {
    "response_timeout_ms",
    "read_retries",
    "select_retries",
    "wait_after_init_ms",
    "collision_recovery_ms",
    "inter_frame_gap_ms",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def meter_changes(
    gw: GatewayHandle, changes: Any, interfaces: Iterable[str] | None = None
) -> dict[str, Any]:
    """Check a change of one meter's settings; every problem is reported at once.
    ``interfaces``: those the meter may move to (default: the wired lines)."""
    allowed = list(gw.lines if interfaces is None else interfaces)
    if not isinstance(changes, dict) or not changes:
        raise BadRequest("send the settings to change as an object")
    checked: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in changes.items():
        if name == "position":
            if not isinstance(value, str) or len(value) > 128:
                errors[name] = "text of at most 128 characters"
            checked[name] = value
        elif name == "enabled":
            if not isinstance(value, bool):
                errors[name] = "true or false"
            checked[name] = value
        elif name == "baud":
            if not _is_int(value) or value not in BAUD_RATES:
                errors[name] = "300, 2400 or 9600"
            checked[name] = value
        elif name == "addressing":
            modes = [m for m in AddressingMode if isinstance(value, list) and m.value in value]
            if not isinstance(value, list) or not value or len(modes) != len(value):
                errors[name] = "a list of primary, secondary, esecondary (first = preferred)"
            checked[name] = tuple(AddressingMode(m) for m in value) if not errors.get(name) else ()
        elif name == "primary_address":
            if value is not None and not (_is_int(value) and 0 <= value <= 250):
                errors[name] = "0-250 or null"
            checked[name] = value
        elif name == "interface":
            if not isinstance(value, str) or value not in allowed:
                errors[name] = f"one of {', '.join(allowed)}" if allowed else "none is configured"
            checked[name] = value
        elif name == "multi_telegram":
            if not isinstance(value, str) or value not in {m.value for m in MultiTelegram}:
                errors[name] = "off or auto"
            else:
                checked[name] = MultiTelegram(value)
        elif name == "multi_telegram_limit":
            if not (_is_int(value) and 1 <= value <= 64):
                errors[name] = "1-64"
            checked[name] = value
        elif name == "timing":
            if not isinstance(value, dict) or any(
                k not in TIMING_NAMES or not _is_int(v) or not 0 <= v <= 60_000
                for k, v in value.items()
            ):
                errors[name] = f"an object of {', '.join(sorted(TIMING_NAMES))}: 0-60000"
            checked[name] = value
        else:
            errors[name] = "unknown meter setting"
    if errors:
        raise BadRequest("the meter settings were refused; nothing was changed", errors)
    return checked


async def update_meter(gw: GatewayHandle, key: str, changes: dict[str, Any]) -> dict[str, Any]:
    meter = find_meter(gw, key)
    receivers = list(gw.wireless.receivers) if gw.wireless is not None else []
    checked = meter_changes(gw, changes, receivers if meter.wireless else None)
    if meter.wireless and "interface" in checked:
        checked["enhanced_address"] = checked["interface"]  # the receiver chain
    modes = checked.get("addressing", meter.addressing)
    primary = checked.get("primary_address", meter.primary_address)
    if AddressingMode.PRIMARY in modes and primary is None:
        raise BadRequest(
            "primary addressing needs a primary address", {"primary_address": "required"}
        )
    if set(modes) - {AddressingMode.PRIMARY} and not meter.secondary_address:
        raise BadRequest("secondary addressing needs a secondary address", {"addressing": "no ID"})
    updated = await gw.update_meter(key, **checked)
    return get_meter(gw, updated.key)


async def remove_meter(gw: GatewayHandle, key: str) -> dict[str, Any]:
    find_meter(gw, key)
    await gw.remove_meters({key})
    return {"ok": True, "message": f"meter {key} removed"}


async def read_now(gw: GatewayHandle, key: str) -> dict[str, Any]:
    if find_meter(gw, key).wireless:
        raise Conflict(
            f"meter {key} is wireless: it sends on its own and cannot be read on demand; "
            "its latest telegram is in its readings"
        )
    reading = await gw.read_meter(key)
    values = record_values(getattr(reading, "telegrams", ()) or ())
    read_at = getattr(reading, "read_at", None)
    return {
        "meter": key,
        "ok": bool(getattr(reading, "ok", False)),
        "read_at": read_at.isoformat(timespec="seconds") if read_at else None,
        "error": getattr(reading, "error", None),
        "values": values,
    }


# ---------------------------------------------------------------------------------- logs


RECENT_LOG_S = 3 * 86_400


def meter_log(
    gw: GatewayHandle,
    key: str,
    since: float | None = None,
    until: float | None = None,
    newest: int | None = None,
) -> dict[str, Any]:
    """The meter's reading log, newest first (``newest``: only that many, as a page shows)."""
    find_meter(gw, key)
    if key not in {m.name for m in gw.store.meters()}:
        return {"meter": key, "entries": []}
    log = None
    if newest is not None:  # the last days hold the newest entries at any usual read rate
        end = until if until is not None else gw.clock.now().timestamp()
        recent = end - RECENT_LOG_S
        if since is None or since < recent:
            log = gw.store.meter_log(key, recent, until)
            log = log if len(log) >= newest else None
    log = log if log is not None else gw.store.meter_log(key, since, until)
    if newest is not None and len(log) > newest:
        log = type(log)(*(getattr(log, f.name)[-newest:] for f in dataclasses.fields(log)))
    entries = [
        {
            "read_at": iso(e.received_at),
            "status": e.status.name.lower(),
            "duration_ms": e.duration_ms,
            "retries": e.retries,
            "status_byte": e.status_byte,
            "error": e.error,
        }
        for e in log
    ]
    entries.reverse()  # newest first, as a person reads a log
    return {"meter": key, "entries": entries}


def log_filter(
    since: float | None = None,
    until: float | None = None,
    min_level: int | None = None,
    max_level: int | None = None,
    origin: str | None = None,
) -> Any:
    from mbusgw.gateway.facade import LogFilter

    for name, level in (("min_level", min_level), ("max_level", max_level)):
        if level is not None and level not in LEVEL_NAMES:
            raise BadRequest(f"{name} must be -1, 0, 1 or 2", {name: "out of range"})
    return LogFilter(since, until, min_level, max_level, origin or None)


def system_log(gw: GatewayHandle, limit: int = 1000, **filters: Any) -> dict[str, Any]:
    if not 1 <= limit <= MAX_LOG_ENTRIES:
        raise BadRequest(f"limit must be 1-{MAX_LOG_ENTRIES}", {"limit": "out of range"})
    entries = gw.store.system_log(log_filter(**filters), limit=limit + 1)
    truncated = len(entries) > limit
    entries = sorted(entries, key=lambda e: e.time, reverse=True)[:limit]
    return {
        "entries": [
            {
                "time": datetime.fromtimestamp(e.time, UTC).isoformat(timespec="milliseconds"),
                "level": e.level,
                "level_name": LEVEL_NAMES.get(e.level, str(e.level)),
                "origin": e.origin,
                "text": e.text,
            }
            for e in entries
        ],
        "truncated": truncated,
    }


# ---------------------------------------------------------------------------------- settings


def get_settings(gw: GatewayHandle, section: str | None = None) -> dict[str, Any]:
    data = masked(gw.settings)
    return data if section is None else data[section]


async def update_settings(
    gw: GatewayHandle, changes: dict[str, Any], section: str | None = None
) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise BadRequest("send the settings to change as an object")
    await gw.update_settings(without_masks({section: changes} if section else changes))
    return get_settings(gw, section)


# ---------------------------------------------------------------------------------- reports


def report_service(gw: GatewayHandle) -> Any:
    """The running push-report service (``Conflict`` when the gateway has none)."""
    service = getattr(gw, "reports", None)
    if service is None:
        raise Conflict("the push-report service is not running")
    return service


async def delete_report(gw: GatewayHandle, name: str) -> None:
    """Remove a report's settings and its delivery cursor (a report made again under the
    name starts afresh from its value period)."""
    from mbusgw.gateway.facade import REPORT_CURSORS as TABLE

    if name not in gw.settings.reports.reports:
        raise NotFound(f"no report {name!r} is configured")
    await gw.update_settings({"reports": {"reports": {name: None}}})
    await gw.writer.delete_record(TABLE, name)


# ---------------------------------------------------------------------------------- wireless


def slave_status(gw: GatewayHandle) -> dict[str, Any]:
    """Virtual and transparent M-Bus and the slave ports: each service's state and counters."""
    return {
        "services": [
            {"name": name, **gw.service_status[name]()} for name in sorted(gw.service_status)
        ]
    }


def wireless_status(gw: GatewayHandle) -> dict[str, Any]:
    """The receivers, and every meter heard (installed or not) with its signal levels."""
    if gw.wireless is None:
        return {"configured": False, "receivers": [], "heard": []}
    return {"configured": True, **gw.wireless.status(), "heard": gw.wireless.heard()}


async def reinstall(gw: GatewayHandle, meter: str | None = None) -> dict[str, Any]:
    """Re-install: bind wireless meters (all, or ``meter``) to their strongest receiver."""
    if gw.wireless is None:
        raise Conflict("no wireless M-Bus receiver is configured")
    if meter is not None and not any(m.key == meter and m.wireless for m in gw.meters):
        raise NotFound(f"no wireless meter {meter!r} is installed")
    return await gw.reinstall_wireless(meter)


# ---------------------------------------------------------------------------------- jobs


def list_jobs(web: Any) -> dict[str, Any]:
    return {"jobs": [job.as_dict() for job in web.jobs.all()]}


def get_job(web: Any, job_id: str) -> dict[str, Any]:
    job = web.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job.as_dict()


SCAN_FIELDS = {"kind", "interfaces", "baud", "expected", "addressing", "install", "duration_s"}


def start_scan(web: Any, params: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise BadRequest("send the search parameters as an object")
    unknown = {name: "unknown parameter" for name in params if name not in SCAN_FIELDS}
    if unknown:
        raise BadRequest("the search was refused", unknown)
    return web.jobs.scan(params).as_dict()


def read_all(web: Any) -> dict[str, Any]:
    return web.jobs.read_all().as_dict()


async def install_job(web: Any, job_id: str) -> dict[str, Any]:
    """Install what a finished search kept (it was told not to install)."""
    job = await web.jobs.install_found(job_id)
    return job.as_dict()


# ---------------------------------------------------------------------------------- device


def stop_for(
    gw: GatewayHandle,
    action: str,
    backup: Any = None,
    passphrase: str | None = None,
    origin: str = "web",
) -> dict[str, Any]:
    """Restart, factory reset or restore: the gateway stops, and ``mbusgw run`` carries the
    action out once the store is closed, then starts the gateway again. ``passphrase``: of a
    backup's secrets, already checked."""
    from mbusgw.gateway.facade import AfterStop

    if gw.after_stop is not None:
        raise Conflict(f"a {gw.after_stop.action.replace('_', ' ')} is under way already")
    gw.after_stop = AfterStop(action, backup, passphrase)
    gw.store.log.warning(origin, f"{action.replace('_', ' ')} requested; stopping")
    gw.stop()
    messages = {
        "restart": "restarting",
        "factory_reset": "stopping; everything is cleared, then the gateway starts afresh",
        "restore": "backup checked; stopping to restore it, then starting again",
    }
    return {"ok": True, "message": messages[action]}
