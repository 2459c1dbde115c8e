"""Every REST route of ``/api/v1`` in one place; the OpenAPI document is built from this table.

Each route is declared with ``@route(method, path, …)``: the path in OpenAPI form, who may call
it, its parameters, request body and response schema (names from ``web/openapi.py``). The views
only read arguments and call ``web/operations.py``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import trio
from quart import Response

from mbusgw.core.jsonout import dumps
from mbusgw.web import api_admin as api_admin  # its routes join this table
from mbusgw.web import device_ops, key_ops
from mbusgw.web import dlms_api as dlms_api  # its routes join this table
from mbusgw.web import events_api as events_api  # its routes join this table
from mbusgw.web import mqtt_api as mqtt_api  # its routes join this table
from mbusgw.web import operations as ops
from mbusgw.web import snmp_api as snmp_api  # its routes join this table
from mbusgw.web import values as vals
from mbusgw.web.api_schemas import BOOL, INT, STR
from mbusgw.web.compress import wants_gzip
from mbusgw.web.errors import BadRequest, Conflict, NotFound
from mbusgw.web.meterlist import meters_json
from mbusgw.web.openapi import Param, build_document
from mbusgw.web.params import (
    arg_bool,
    arg_int,
    arg_time,
    json_body,
    query_filters,
    text_of,
    uploaded_file,
)
from mbusgw.web.routes import (
    LOG_PARAMS,
    METER,
    ROUTES,
    SERIES_PARAMS,
    SINCE,
    UNTIL,
    download,
    gw,
    reply,
    route,
)
from mbusgw.web.routes import blueprint as blueprint  # the app registers it from here
from mbusgw.web.state import state

# ---------------------------------------------------------------------------- the document


@route("GET", "/openapi.json", "This document", "meta", access="public", response="OpenApi")
async def openapi_document() -> Response:
    web = state()
    if web.openapi is None:  # kept as text: half the memory of its dicts, written once
        web.openapi = dumps(build_document(ROUTES))
    return Response(web.openapi, mimetype="application/json")


# ---------------------------------------------------------------------------- device


@route("GET", "/device", "Device information", "device", response="DeviceInfo")
async def device_info() -> Response:
    return reply(device_ops.device_info(gw()))


@route("GET", "/device/status", "Device status", "device", response="DeviceStatus")
async def device_status() -> Response:
    return reply(device_ops.device_status(gw()))


@route("POST", "/device/restart", "Restart the gateway", "device", access="admin",
       response="Ok", status=202)  # fmt: skip
async def device_restart() -> Response:
    return reply(ops.stop_for(gw(), "restart"), 202)


@route("POST", "/device/factory-reset", "Factory reset: clear logs, values and settings",
       "device", access="admin", response="Ok", status=202)  # fmt: skip
async def device_factory_reset() -> Response:
    return reply(ops.stop_for(gw(), "factory_reset"), 202)


# ---------------------------------------------------------------------------- meters


@route("GET", "/meters", "Installed meters with state, health and latest reading", "meters",
       params=(Param("passive", BOOL, "include passive meters (default true)"),
               Param("offset", INT, "skip this many meters of the list (paging; default 0)"),
               Param("limit", INT, "at most this many meters (paging; default all)"),
               Param("fields", STR, "only these fields of each meter, comma-separated, and "
                     "always key, position and state (e.g. interface,latest)")),
       response="MeterList")  # fmt: skip
async def meters_list() -> Response:
    from quart import request

    body, gzipped = meters_json(
        gw(),
        passive=arg_bool("passive", True),
        offset=arg_int("offset", 0, 0, 4096) or 0,
        limit=arg_int("limit", None, 1, 4096),
        fields=ops.meter_fields(request.args.get("fields")),
        gzip=wants_gzip(request),
    )
    response = Response(body, mimetype="application/json")
    if gzipped:  # compressed from the parts kept (web/compress.py leaves it as it is)
        response.headers["Content-Encoding"] = "gzip"
    return response


@route("POST", "/meters", "Install meters from a meter list (CSV, manual table 5)", "meters",
       access="admin", body="csv", response="InstallResult",
       params=(Param("interface", STR, "the M-Bus line of the rows that name none in their "
                     "Interface column (default: the first line)"),))  # fmt: skip
async def meters_install() -> Response:
    from quart import request

    data, _ = await uploaded_file()
    interface = request.args.get("interface") or None
    return reply(await ops.install_meters(gw(), text_of(data), interface))


@route("GET", "/meters/template.csv", "Meter list template", "meters", media="csv")
async def meters_template() -> Response:
    return download(ops.meter_template(), "text/csv", "meter-list-template.csv")


@route("GET", "/meters/settings-report.csv", "Meter settings report", "meters", media="csv")
async def meters_settings_report() -> Response:
    from mbusgw.web.reports import meter_settings_csv

    return download(meter_settings_csv(gw()), "text/csv", "meter-settings.csv")


@route("POST", "/meters/reinstall",
       "Re-install: bind wireless meters to the receiver that hears them best", "meters",
       access="admin", response="ReinstallResult",
       params=(Param("meter", STR, "only this wireless meter (default: all)"),))  # fmt: skip
async def meters_reinstall() -> Response:
    from quart import request

    return reply(await ops.reinstall(gw(), request.args.get("meter") or None))


@route("GET", "/wireless", "Wireless receivers and every meter they hear (installed or not)",
       "meters", response="WirelessStatus")  # fmt: skip
async def wireless_status() -> Response:
    return reply(ops.wireless_status(gw()))


@route("GET", "/meters/{key}", "One meter", "meters", params=(METER,), response="Meter")
async def meter_get(key: str) -> Response:
    return reply(ops.get_meter(gw(), key))


@route("PATCH", "/meters/{key}", "Change a meter's settings", "meters", access="admin",
       params=(METER,), body="MeterChange", response="Meter")  # fmt: skip
async def meter_update(key: str) -> Response:
    return reply(await ops.update_meter(gw(), key, await json_body()))


@route("DELETE", "/meters/{key}", "Uninstall a meter", "meters", access="admin",
       params=(METER,), response="Ok")  # fmt: skip
async def meter_delete(key: str) -> Response:
    return reply(await ops.remove_meter(gw(), key))


@route("POST", "/meters/{key}/read", "Read the meter now", "meters", access="admin",
       params=(METER,), response="ReadResult")  # fmt: skip
async def meter_read(key: str) -> Response:
    return reply(await ops.read_now(gw(), key))


@route("GET", "/meters/{key}/series", "The meter's stored series", "values", params=(METER,),
       response="SeriesList")  # fmt: skip
async def meter_series_list(key: str) -> Response:
    return reply(vals.meter_series(gw(), key))


@route("GET", "/meters/{key}/series/{series}", "One series over a time range (paginated)",
       "values", params=SERIES_PARAMS, response="SeriesValues")  # fmt: skip
async def meter_series_values(key: str, series: str) -> Response:
    as_float = arg_bool("float")
    data, table = _series_page(key, series, materialize=False)
    return Response(vals.series_json(data, table, as_float), mimetype="application/json")


@route("GET", "/meters/{key}/series/{series}.csv", "One series over a time range as CSV",
       "values", params=SERIES_PARAMS[:5], media="csv")  # fmt: skip
async def meter_series_csv(key: str, series: str) -> Response:
    data, table = _series_page(key, series, materialize=False)
    body = vals.series_csv(data, table)
    response = download(body, "text/csv", f"{key}-{data['series']['id']}.csv")
    if data["next"]:
        response.headers["X-Next-Since"] = data["next"]
    return response


def _series_page(key: str, series: str, materialize: bool = True) -> tuple[dict[str, Any], Any]:
    try:
        series_id = int(series)
    except ValueError:
        raise BadRequest("the series id must be a number", {"series": "not a number"}) from None
    return vals.series_values(
        gw(),
        key,
        series_id,
        since=arg_time("since"),
        until=arg_time("until", end_of_day=True),
        limit=arg_int("limit", vals.DEFAULT_SERIES_PAGE, 1, vals.MAX_SERIES_PAGE),
        as_float=arg_bool("float"),
        materialize=materialize,
    )


@route("GET", "/meters/{key}/log", "The meter log (reading status of each reading)", "logs",
       params=(METER, SINCE, UNTIL), response="MeterLog")  # fmt: skip
async def meter_log(key: str) -> Response:
    since, until = arg_time("since"), arg_time("until", end_of_day=True)
    return reply(ops.meter_log(gw(), key, since, until))


@route("PUT", "/meters/{key}/key", "Link a wireless M-Bus key to the meter", "keys",
       access="admin", params=(METER,), body="KeyLink", response="KeyListing")  # fmt: skip
async def meter_key_link(key: str) -> Response:
    body = await json_body()
    return reply(await key_ops.link_key(state(), key, body.get("key")))


@route("DELETE", "/meters/{key}/key", "Remove the meter's linked key", "keys",
       access="admin", params=(METER,), response="KeyListing")  # fmt: skip
async def meter_key_unlink(key: str) -> Response:
    return reply(await key_ops.unlink_key(state(), key))


# ---------------------------------------------------------------------------- values


@route("GET", "/values/latest", "The latest stored values of every meter", "values",
       response="LatestValues")  # fmt: skip
async def values_latest() -> Response:
    return Response(vals.latest_values_json(gw()), mimetype="application/json")


@route("GET", "/values/live", "The continuous-read snapshot (in memory)", "values",
       response="LiveSnapshot")  # fmt: skip
async def values_live() -> Response:
    return reply(vals.live_snapshot(gw()))


@route("POST", "/values/read", "Read all meters and store (a job)", "values", access="admin",
       response="Job", status=202)  # fmt: skip
async def values_read_all() -> Response:
    return reply(ops.read_all(state()), 202)


# ---------------------------------------------------------------------------- logs


@route("GET", "/log", "The system log, newest first", "logs",
       params=(*LOG_PARAMS, Param("limit", INT, f"at most this many (1-{ops.MAX_LOG_ENTRIES})")),
       response="SystemLog")  # fmt: skip
async def system_log() -> Response:
    limit = arg_int("limit", 1000, 1, ops.MAX_LOG_ENTRIES)
    return reply(ops.system_log(gw(), limit=limit, **query_filters()))


@route("GET", "/log.csv", "The system log as CSV", "logs", params=LOG_PARAMS, media="csv")
async def system_log_csv() -> Response:
    where = ops.log_filter(**query_filters())
    out = io.StringIO()
    await trio.to_thread.run_sync(gw().store.export_system_log, out, where)
    return download(out.getvalue(), "text/csv", "system-log.csv")


# ---------------------------------------------------------------------------- scans and jobs


@route("POST", "/scans", "Start a meter search (primary, secondary or wireless)", "jobs",
       access="admin", body="ScanRequest", response="Job", status=202)  # fmt: skip
async def scan_start() -> Response:
    return reply(ops.start_scan(state(), await json_body()), 202)


@route("GET", "/jobs", "Searches and reading jobs with their progress", "jobs",
       response="JobList")  # fmt: skip
async def jobs_list() -> Response:
    return reply(ops.list_jobs(state()))


@route("GET", "/jobs/{job}", "One job", "jobs",
       params=(Param("job", STR, "job id", where="path"),), response="Job")  # fmt: skip
async def job_get(job: str) -> Response:
    return reply(ops.get_job(state(), job))


@route("DELETE", "/jobs/{job}", "Cancel a job", "jobs", access="admin",
       params=(Param("job", STR, "job id", where="path"),), response="Job")  # fmt: skip
async def job_cancel(job: str) -> Response:
    state().jobs.cancel(job)
    return reply(ops.get_job(state(), job))


@route("POST", "/jobs/{job}/install", "Install the meters a finished search kept", "jobs",
       access="admin", params=(Param("job", STR, "job id", where="path"),),
       response="Job")  # fmt: skip
async def job_install(job: str) -> Response:
    return reply(await ops.install_job(state(), job))


# ---------------------------------------------------------------------------- settings


@route("GET", "/settings", "All settings", "settings", response="Settings")
async def settings_get() -> Response:
    return reply(ops.get_settings(gw()))


@route("PATCH", "/settings", "Change settings (only what changes; all or nothing)", "settings",
       access="admin", body="SettingsChange", response="Settings")  # fmt: skip
async def settings_update() -> Response:
    return reply(await ops.update_settings(gw(), await json_body()))


# ---------------------------------------------------------------------------- keys


@route("GET", "/keys", "Wireless M-Bus keys (masked)", "keys", access="admin",
       response="KeyListing")  # fmt: skip
async def keys_list() -> Response:
    return reply(key_ops.key_listing(state()))


@route("POST", "/keys", "Add a key with match criteria", "keys", access="admin",
       body="KeyEntry", response="KeyListing")  # fmt: skip
async def keys_add() -> Response:
    return reply(await key_ops.add_key(state(), await json_body()))


@route("POST", "/keys/import", "Upload a key file (CSV, XLSX or XLS; manual table 7)", "keys",
       access="admin", body="file", response="KeyImport",
       params=(Param("replace", BOOL, "replace all existing entries"),))  # fmt: skip
async def keys_import() -> Response:
    data, filename = await uploaded_file()
    return reply(await key_ops.import_keys(state(), data, filename, arg_bool("replace")))


@route("DELETE", "/keys/{entry}", "Remove a key entry", "keys", access="admin",
       params=(Param("entry", INT, "entry id", where="path"),), response="KeyListing")  # fmt: skip
async def keys_remove(entry: str) -> Response:
    if not entry.isdigit():
        raise BadRequest("the entry id must be a number", {"entry": "not a number"})
    return reply(await key_ops.remove_key(state(), int(entry)))


# ---------------------------------------------------------------------------- push reports

REPORT = Param("name", STR, "the report's name (a key of the reports settings)", where="path")


def report_service() -> Any:
    return ops.report_service(gw())


def outcome_reply(outcome: Any) -> Response:
    return reply(
        {"ok": outcome.ok, "values": outcome.values, "reply": outcome.reply, "error": outcome.error}
    )


async def report_call(call: Callable[[], Any]) -> Response:
    from mbusgw.gateway.errors import DeliveryError, ReportError, UnknownReport

    try:
        return outcome_reply(await call())
    except UnknownReport as exc:
        raise NotFound(str(exc)) from None
    except DeliveryError as exc:
        return reply({"ok": False, "values": 0, "reply": "", "error": str(exc)})
    except ReportError as exc:
        raise Conflict(str(exc)) from None


@route("GET", "/reports", "Push reports and their delivery status", "reports",
       response="ReportList")  # fmt: skip
async def reports_list() -> Response:
    return reports_list_reply()


def reports_list_reply() -> Response:
    return reply({"reports": [status.as_dict() for status in report_service().status()]})


@route("DELETE", "/reports/{name}", "Remove a report: its settings and its delivery cursor",
       "reports", access="admin", params=(REPORT,), response="ReportList")  # fmt: skip
async def report_delete(name: str) -> Response:
    await ops.delete_report(gw(), name)
    return reports_list_reply()


@route("POST", "/reports/{name}/test", "Send a test report now (its cursor does not move)",
       "reports", access="admin", params=(REPORT,), response="ReportOutcome")  # fmt: skip
async def report_send_test(name: str) -> Response:
    return await report_call(lambda: report_service().send_test(name))


@route("POST", "/reports/{name}/run", "Read every meter, then send this on-demand report",
       "reports", access="admin", params=(REPORT,), response="ReportOutcome")  # fmt: skip
async def report_run_on_demand(name: str) -> Response:
    return await report_call(lambda: report_service().run_on_demand(name))


# ---------------------------------------------------------------------------- M-Bus slave


@route("GET", "/slave", "Virtual and transparent M-Bus, slave ports: status and counters",
       "slave", response="SlaveStatus")  # fmt: skip
async def slave_status() -> Response:
    return reply(ops.slave_status(gw()))


# ---------------------------------------------------------------------------- Modbus


@route("GET", "/modbus/map.csv", "The Modbus register map of the installed meters (CSV)",
       "modbus", media="csv")  # fmt: skip
async def modbus_map() -> Response:
    service = gw().modbus
    if service is None:
        raise Conflict("the Modbus service is not running")
    return download(service.map_csv(), "text/csv", "modbus-map.csv")
