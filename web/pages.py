"""The HTML pages: server-rendered, every action a plain form post (CSRF-protected), so the
interface works without JavaScript. Two small scripts of our own add the graphs (drawn from
the API) and the live progress of searches; without them the pages still show tables.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio
from quart import Blueprint, Response, g, redirect, render_template, request, url_for

from mbusgw.gateway.cron import PREDEFINED
from mbusgw.gateway.facade import CsvWriter
from mbusgw.gateway.settings import ConfigError
from mbusgw.web import dashboard, graph, meter_list, readable
from mbusgw.web import operations as ops
from mbusgw.web import values as vals
from mbusgw.web.auth import admin_only, first_change, public, same_site_path, self_service
from mbusgw.web.errors import ApiError, BadRequest, NotFound, as_api_error
from mbusgw.web.params import arg_bool, arg_int, query_filters, text_of, uploaded_file
from mbusgw.web.plain import MAX_SERIES_PAGE, plain
from mbusgw.web.routes import gw
from mbusgw.web.state import state
from mbusgw.web.times import local_zone

blueprint = Blueprint("pages", __name__)

NAVIGATION = (
    ("pages.installation", "Installation"),
    ("pages.system", "System"),
    ("pages.meters", "Meters"),
    ("pages.wireless", "Wireless"),
    ("pages.search", "Search"),
    ("pages.mbus_settings", "M-Bus"),
    ("slave_pages.slave", "M-Bus slave"),
    ("modbus_page.modbus", "Modbus"),
    ("report_pages.reports", "Reports"),
    ("pages.autoconfig", "Autoconfig"),
    ("integrations_page.integrations", "Integrations"),
    ("pages.system_log", "Log"),
    ("pages.keys", "Keys"),
    ("pages.users", "Users"),
    ("pages.device", "Device"),
    ("pages.licence", "Licence"),
)


async def page(template: str, **context: Any) -> str:
    """Render with what every page needs: user, CSRF token, navigation, flash message."""
    session = state().auth.ensure_session()
    return await render_template(
        template,
        user=g.get("user"),
        csrf_token=session.csrf,
        navigation=NAVIGATION,
        device_name=gw().settings.identity.device_name,
        notice=request.args.get("notice"),
        **context,
    )


def back(endpoint: str, notice: str, **values: Any) -> Response:
    """After a form post: redirect (so reloading does not post again) with a notice."""
    return redirect(url_for(endpoint, notice=notice, **values), 303)


async def attempt(action: Any) -> tuple[Any, ApiError | None]:
    """Run an action of a form; a refusal is shown on the page instead of an error page."""
    try:
        return await action(), None
    except Exception as exc:
        error = as_api_error(exc)
        if error is None or error.status >= 500:
            raise
        return None, error


def safe_next(target: str | None) -> str:
    """Only a path on this site may follow a login (no open redirect)."""
    return same_site_path(target) or url_for("pages.installation")


@blueprint.get("/favicon.ico")
@public
async def favicon() -> Response:
    """Browsers ask for /favicon.ico whatever the page links: the same icon (SVG)."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


# ------------------------------------------------------------------------------ sign in


@blueprint.route("/login", methods=["GET", "POST"])
@public
async def login() -> Any:
    error = None
    if request.method == "POST":
        form = await request.form
        name, password = form.get("username", ""), form.get("password", "")
        user, error = await attempt(lambda: state().auth.login(name, password))
        if user is not None:
            state().auth.start_session(user)
            if user.must_change:
                return redirect(url_for("pages.first_login"), 303)
            return redirect(safe_next(form.get("next")), 303)
    status = error.status if error else 200
    return await page("login.html", error=error, next=request.args.get("next", "")), status


@blueprint.post("/logout")
@first_change
async def logout() -> Response:
    state().auth.end_session()
    return redirect(url_for("pages.login"), 303)


@blueprint.route("/first-login", methods=["GET", "POST"])
@first_change
async def first_login() -> Any:
    user = g.user
    if not user.must_change:
        return redirect(url_for("pages.installation"))
    error = None
    if request.method == "POST":
        form = await request.form
        web = state()
        if form.get("new_password") != form.get("repeat_password"):
            error = BadRequest("the two passwords differ", {"repeat_password": "differs"})
        else:
            updated, error = await attempt(
                lambda: web.auth.users.complete_first_login(
                    user.name, form.get("new_username", ""), form.get("new_password", "")
                )
            )
            if updated is not None:
                web.auth.password_changed(user.name, updated)
                return back("pages.installation", "Account saved. Welcome!")
    return await page("first_login.html", error=error), 400 if error else 200


@blueprint.route("/account", methods=["GET", "POST"])
@self_service
async def account() -> Any:
    error = None
    token = None
    if request.method == "POST":
        form = await request.form
        web = state()
        action = form.get("action")
        if action == "password":
            current = await web.auth.users.verify(g.user.name, form.get("current_password", ""))
            if current is None:
                error = BadRequest("the current password is wrong")
            elif form.get("new_password") != form.get("repeat_password"):
                error = BadRequest("the two passwords differ")
            else:
                updated, error = await attempt(
                    lambda: web.auth.users.update(g.user.name, password=form["new_password"])
                )
                if updated is not None:
                    web.auth.password_changed(g.user.name, updated)
                    return back("pages.account", "Password changed")
        elif action == "token":
            token, error = await attempt(
                lambda: web.auth.users.create_token(g.user.name, form.get("label", ""))
            )
        elif action == "revoke":
            _, error = await attempt(
                lambda: web.auth.users.delete_token(g.user.name, form.get("token", ""))
            )
            if error is None:
                return back("pages.account", "Token revoked")
    user = state().auth.users.require(g.user.name)
    return await page("account.html", account=user, error=error, token=token)


# ------------------------------------------------------------------------------ panels


@blueprint.get("/")
async def installation() -> str:
    gateway = gw()
    settings = gateway.settings
    info = ops.device_info(gateway)
    server = request.scope.get("server")
    if server and server[0] not in {a["address"] for a in info["addresses"]}:
        info["addresses"].insert(0, {"interface": "this connection", "address": server[0]})
    zone = local_zone(settings.timezone)
    shown = request.args.get("preview") or settings.reading.schedule  # see schedule()
    runs, problem = dashboard.next_runs(
        shown, str(gateway.startup.data_dir), zone, gateway.clock.now()
    )
    return await page(
        "installation.html",
        info=info,
        counts=ops.meter_counts(gateway),
        panel=dashboard.panel(gateway, zone),
        reading=settings.reading,
        shown_schedule=shown,
        schedule_words=dashboard.schedule_words,
        runs=runs,
        schedule_problem=problem,
        schedules=SCHEDULE_CHOICES,
        jobs=ops.list_jobs(state())["jobs"][-5:],
        lines=list(gateway.lines),
    )


SCHEDULE_CHOICES = tuple(
    (name, name.replace("_", " ").capitalize()) for name in PREDEFINED
)  # the manual's predefined read schedules; anything else is a cron expression


@blueprint.post("/install")
@admin_only
async def install_meters() -> Any:
    data, _ = await uploaded_file()
    interface = (await request.form).get("interface") or None
    result, error = await attempt(lambda: ops.install_meters(gw(), text_of(data), interface))
    if error is not None:
        return await page("install_error.html", error=error), error.status
    notice = (
        f"Installed {result['installed']} meters ({result['active']} active, "
        f"{result['passive']} passive)"
    )
    if result["warning"]:
        notice += f". Warning: {result['warning']}"
    return back("pages.meters", notice)


@blueprint.post("/schedule")
@admin_only
async def schedule() -> Any:
    form = await request.form
    choice = form.get("schedule", "")
    expression = form.get("cron", "").strip() if choice == "cron" else choice
    if form.get("action") == "preview":  # the next runs of what is entered, nothing saved
        return redirect(url_for("pages.installation", preview=expression[:256]), 303)
    changes = {"reading": {"schedule": expression, "enabled": form.get("enabled") == "on"}}
    _, error = await attempt(lambda: gw().update_settings(changes))
    if error is not None:
        return back("pages.installation", f"Schedule refused: {_detail(error)}")
    return back("pages.installation", "Read schedule saved")


@blueprint.post("/read-all")
@admin_only
async def read_all() -> Response:
    job = ops.read_all(state())
    return back("pages.job", "Reading all meters", job=job["id"])


@blueprint.get("/install-report.xlsx")
async def install_report() -> Response:
    from mbusgw.web.reports import installation_report

    data = await trio.to_thread.run_sync(installation_report, gw())
    response = Response(data, mimetype=ops_media("xlsx"))
    stamp = gw().clock.now().strftime("%Y%m%d-%H%M")
    response.headers["Content-Disposition"] = f'attachment; filename="install-report-{stamp}.xlsx"'
    return response


def ops_media(kind: str) -> str:
    from mbusgw.web.openapi import MEDIA

    return MEDIA[kind]


@blueprint.get("/system")
async def system() -> str:
    gateway = gw()
    return await page(
        "system.html",
        info=ops.device_info(gateway),
        status=ops.device_status(gateway),
    )


# ------------------------------------------------------------------------------ meters


@blueprint.get("/meters")
async def meters() -> str:
    show_passive = arg_bool("passive", False)
    listing = ops.list_meters(gw(), passive=show_passive, latest=False)
    query = meter_list.ListQuery.of(request.args)
    rows, choices = meter_list.rows_of(gw(), listing, query)
    wireless = gw().wireless is not None
    settings = gw().settings
    href = url_for("pages.meter", key="KEY").replace("KEY", "{key}")
    return await page(
        "meters.html",
        listing=listing,
        rows=rows,
        rows_html=meter_list.rows_html(
            rows, href, settings.timezone, settings.conventions.language
        ),
        query=query,
        choices=choices,
        sorts=meter_list.SORTS,
        show_passive=show_passive,
        wireless=wireless,
    )


@blueprint.post("/meters/reinstall")
@admin_only
async def meters_reinstall() -> Response:
    form = await request.form
    meter = form.get("meter") or None
    result, error = await attempt(lambda: ops.reinstall(gw(), meter))
    if error is not None:
        return back("pages.meters", f"Re-install refused: {_detail(error)}")
    moved = "; ".join(f"{m['meter']}: {m['old'] or 'none'} → {m['new']}" for m in result["moved"])
    text = f"Re-install: {len(result['moved'])} of {result['meters']} wireless meter(s) moved"
    text += f" ({moved})" if moved else ""
    if result["not_heard"]:
        text += f", {len(result['not_heard'])} not heard in the last hour"
    if meter is not None:
        return back("pages.meter", text, key=meter)
    return back("pages.meters", text)


@blueprint.get("/wireless")
async def wireless() -> str:
    return await page("wireless.html", status=ops.wireless_status(gw()))


RANGES = (("1d", "24 hours", 1), ("7d", "7 days", 7), ("30d", "30 days", 30),
          ("365d", "1 year", 365))  # fmt: skip


@blueprint.get("/meters/<key>")
async def meter(key: str) -> str:
    gateway = gw()
    data = ops.get_meter(gateway, key)
    shown = _shown_graph(key)
    log = ops.meter_log(gateway, key, since=shown.since, newest=50)["entries"]
    recent = log[:48][::-1]  # the meter log is newest first; the sparkline oldest first
    health_line = graph.sparkline([e["duration_ms"] for e in recent],
                                  [e["status"] == "ok" for e in recent])  # fmt: skip
    rows: list[tuple[int, Any]] = []
    if shown.table is not None:
        table = shown.table
        rows = [(int(table.received_at[i]), plain(table.value(i)))
                for i in range(len(table) - 1, max(len(table) - 51, -1), -1)]  # fmt: skip
    return await page(
        "meter.html",
        meter=data,
        series=shown.series,
        chosen=shown.chosen,
        shown=shown.info,
        ranges=RANGES,
        span=shown.span,
        view=shown.view,
        compare=shown.compare,
        views=graph.VIEWS if shown.counter else graph.VIEWS[:1],
        graph=shown.graph,
        rows=rows,
        log=log,
        health_line=health_line,
        telegram=_last_telegram(key, data),
        addressing=[ADDRESSING_WORDS.get(mode, mode) for mode in data["addressing"]],
    )


ADDRESSING_WORDS = {
    "primary": "primary address",
    "secondary": "secondary address",
    "esecondary": "secondary address with fabrication number",
}


def _last_telegram(key: str, data: dict[str, Any]) -> list[str]:
    """The frames of the meter's newest stored reading, in hex (kept while raw telegrams
    are retained)."""
    latest = data.get("latest")
    if not latest or not latest.get("read_at") or not _stored(key):
        return []
    at = datetime.fromisoformat(latest["read_at"]).timestamp()
    raw = gw().store.raw_telegrams(key, at, at + 1)
    return [" ".join(f"{b:02X}" for b in frame) for frame in raw[-1].frames] if raw else []


@dataclass
class ShownGraph:
    """The series, range and view a meter page's query asks for, and their graph."""

    series: list[dict[str, Any]]
    chosen: int | None
    info: dict[str, Any] | None
    span: str
    view: str
    since: int
    until: int
    counter: bool = False
    compare: bool = False  # the range before drawn too (dashed)
    table: Any = None
    graph: graph.Graph | None = None


def _shown_graph(key: str) -> ShownGraph:
    gateway = gw()
    series = vals.meter_series(gateway, key)["series"] if _stored(key) else []
    readable.labelled(series, gateway.settings.conventions.language)
    measured = [s for s in series if s["numeric"]] or series
    chosen = arg_int("series", measured[0]["id"] if measured else None, 0)
    span = request.args.get("range", "7d")
    days = next((d for name, _, d in RANGES if name == span), 7)
    until = int(gateway.clock.now().timestamp())
    since = until - days * 86_400
    info = next((s for s in series if s["id"] == chosen), None)
    counter = info is not None and graph.is_counter(info["quantity"], info["description"])
    view = request.args.get("view", "values")
    view = view if counter and view in graph.PERIODS else "values"
    zone = local_zone(gateway.settings.timezone)
    load = since
    if view in graph.PERIODS:  # whole periods, and the reading before the first one
        since = graph.boundaries(since, since, zone, view)[0]
        load = graph.boundaries(since - 1, since - 1, zone, view)[0]
    shown = ShownGraph(series, chosen, info, span, view, since, until, counter)
    shown.compare = request.args.get("compare") == "1"
    if info is not None:
        _, shown.table = vals.series_values(
            gateway, key, info["id"], since=load, limit=MAX_SERIES_PAGE, materialize=False
        )
        previous = None
        if shown.compare and view == "values":
            _, previous = vals.series_values(gateway, key, info["id"], since=2 * since - until,
                                             until=since, limit=MAX_SERIES_PAGE,
                                             materialize=False)  # fmt: skip
        shown.graph = graph.draw(shown.table, label=info["label"], unit=info["unit"],
                                 since=since, until=until, zone=zone, view=view,
                                 previous=previous)  # fmt: skip
    return shown


@blueprint.get("/meters/<key>/graph.<kind>")
async def meter_graph_file(key: str, kind: str) -> Response:
    """The graph the meter page shows (the same query), as SVG or as CSV."""
    ops.get_meter(gw(), key)
    shown = _shown_graph(key)
    if shown.graph is None or not shown.graph.svg or kind not in ("svg", "csv"):
        raise NotFound(f"no graph {kind!r} for meter {key!r}")
    name = re.sub(r"[^\w.-]", "_", f"{key}-{shown.chosen}-{shown.span}-{shown.view}.{kind}")
    if kind == "svg":
        response = Response(shown.graph.svg, mimetype="image/svg+xml")
    else:
        out = io.StringIO()
        zone = local_zone(gw().settings.timezone)
        CsvWriter(out).writerows(graph.csv_rows(shown.graph, shown.table, zone))
        response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _stored(key: str) -> bool:
    return gw().store.meter(key) is not None


@blueprint.post("/meters/<key>/read")
@admin_only
async def meter_read(key: str) -> Response:
    result = await ops.read_now(gw(), key)
    text = "Read OK" if result["ok"] else f"Reading failed: {result['error']}"
    return back("pages.meter", text, key=key)


@blueprint.post("/meters/<key>/settings")
@admin_only
async def meter_settings(key: str) -> Response:
    form = await request.form
    changes: dict[str, Any] = {
        "position": form.get("position", ""),
        "enabled": form.get("enabled") == "on",
    }
    if "multi_telegram" in form:  # a wireless meter's form has no wired fields
        changes["multi_telegram"] = form["multi_telegram"]
    for name in ("baud", "multi_telegram_limit"):
        if form.get(name, "").isdigit():
            changes[name] = int(form[name])
    _, error = await attempt(lambda: ops.update_meter(gw(), key, changes))
    return back("pages.meter", f"Refused: {_detail(error)}" if error else "Saved", key=key)


@blueprint.post("/meters/<key>/remove")
@admin_only
async def meter_remove(key: str) -> Response:
    await ops.remove_meter(gw(), key)
    return back("pages.meters", f"Meter {key} removed")


# ------------------------------------------------------------------------------ search


@blueprint.route("/search", methods=["GET", "POST"])
async def search() -> Any:
    if request.method == "POST":
        if not g.user.is_admin:
            raise BadRequest("only an administrator can start a search")
        form = await request.form
        params: dict[str, Any] = {"kind": form.get("kind", "secondary")}
        if form.get("baud", "").isdigit():
            params["baud"] = int(form["baud"])
        if form.get("expected", "").isdigit():
            params["expected"] = int(form["expected"])
        if form.getlist("interfaces"):
            params["interfaces"] = form.getlist("interfaces")
        if params["kind"] == "wireless" and form.get("duration_s", "").isdigit():
            params["duration_s"] = int(form["duration_s"])
        job, error = await attempt(lambda: _start_scan(params))
        if error is None:
            return back("pages.job", "Search started", job=job["id"])
        return back("pages.search", f"Search refused: {_detail(error)}")
    return await page(
        "search.html", jobs=ops.list_jobs(state())["jobs"], interfaces=list(gw().lines)
    )


async def _start_scan(params: dict[str, Any]) -> dict[str, Any]:
    return ops.start_scan(state(), params)


@blueprint.get("/jobs/<job>")
async def job(job: str) -> str:
    return await page("job.html", job=ops.get_job(state(), job))


@blueprint.post("/jobs/<job>/install")
@admin_only
async def job_install(job: str) -> Response:
    result, error = await attempt(lambda: ops.install_job(state(), job))
    if error is not None:
        return back("pages.job", f"Install refused: {_detail(error)}", job=job)
    installed = result["result"]["installed"]
    return back("pages.job", f"Installed the meters found ({installed} new)", job=job)


# ------------------------------------------------------------------------------ settings


TIMING_FIELDS = (
    ("response_timeout_ms", "Response timeout (ms)"),
    ("read_retries", "Read retries"),
    ("select_retries", "Select retries"),
    ("wait_after_init_ms", "Wait after init (ms)"),
    ("collision_recovery_ms", "Collision recovery (ms)"),
    ("inter_frame_gap_ms", "Inter-frame gap (ms)"),
)


@blueprint.route("/settings/mbus", methods=["GET", "POST"])
async def mbus_settings() -> Any:
    error = None
    if request.method == "POST":
        if not g.user.is_admin:
            raise BadRequest("only an administrator can change settings")
        form = await request.form
        changes: dict[str, Any] = {"timing": {}, "multi_telegram_timing": {}}
        try:
            for group in ("timing", "multi_telegram_timing"):
                for name, _ in TIMING_FIELDS:
                    changes[group][name] = int(form.get(f"{group}.{name}", ""))
            changes["multi_telegram"] = form.get("multi_telegram", "auto")
            changes["multi_telegram_limit"] = int(form.get("multi_telegram_limit", ""))
        except ValueError:
            error = BadRequest("every field needs a whole number")
        if error is None:
            _, error = await attempt(lambda: gw().update_settings({"mbus": changes}))
            if error is None:
                return back("pages.mbus_settings", "M-Bus settings saved")
    return await page(
        "mbus_settings.html", mbus=gw().settings.mbus, fields=TIMING_FIELDS, error=error
    ), (error.status if error else 200)


# ------------------------------------------------------------------------------ logs


@blueprint.get("/log")
async def system_log() -> str:
    filters = query_filters(local_zone(gw().settings.timezone))
    entries = ops.system_log(gw(), limit=500, **filters)
    return await page("log.html", log=entries, args=request.args)


# ------------------------------------------------------------------------------ keys


@blueprint.route("/keys", methods=["GET", "POST"])
@admin_only
async def keys() -> Any:
    error = None
    if request.method == "POST":
        form = await request.form
        if form.get("action") == "remove":
            entry = form.get("entry", "")
            _, error = await attempt(lambda: ops.remove_key(state(), int(entry or -1)))
            if error is None:
                return back("pages.keys", f"Key entry {entry} removed")
        elif form.get("action") == "upload":
            data, name = await uploaded_file()
            result, error = await attempt(
                lambda: ops.import_keys(state(), data, name, form.get("replace") == "on")
            )
            if error is None:
                return back("pages.keys", f"{result['added']} keys added")
        else:
            entry = {k: form.get(k) or None for k in ("address", "manufacturer")}
            entry["key"] = form.get("key", "")
            _, error = await attempt(lambda: ops.add_key(state(), entry))
            if error is None:
                return back("pages.keys", "Key added")
    return await page("keys.html", listing=ops.key_listing(state()), error=error), (
        error.status if error else 200
    )


async def _async(fn: Any, *args: Any) -> Any:
    return fn(*args)


# ------------------------------------------------------------------------------ users


@blueprint.route("/users", methods=["GET", "POST"])
@admin_only
async def users() -> Any:
    error = None
    directory = state().auth.users
    if request.method == "POST":
        form = await request.form
        action, name = form.get("action"), form.get("name", "")
        if action == "add":
            _, error = await attempt(
                lambda: directory.add(name, form.get("password", ""), form.get("role", ""))
            )
            notice = f"User {name} added"
        elif action == "delete":
            _, error = await attempt(lambda: directory.delete(name))
            notice = f"User {name} deleted"
        else:
            password = form.get("password") or None
            _, error = await attempt(
                lambda: directory.update(name, password=password, role=form.get("role"))
            )
            notice = f"User {name} saved"
        if error is None:
            if action == "delete" or form.get("password"):
                state().auth.sessions.drop_user(name)
            return back("pages.users", notice)
    return await page("users.html", accounts=directory.all(), error=error), (
        error.status if error else 200
    )


# ------------------------------------------------------------------------------ device


@blueprint.get("/device")
async def device() -> str:
    return await page("device.html", info=ops.device_info(gw()), tls=state().tls.status())


@blueprint.post("/device/<action>")
@admin_only
async def device_action(action: str) -> Any:
    gateway = gw()
    if action == "restart":
        return back("pages.device", ops.stop_for(gateway, "restart")["message"])
    if action == "factory-reset":
        form = await request.form
        if form.get("confirm") != "RESET":
            return back("pages.device", "Type RESET to confirm a factory reset")
        return back("pages.device", ops.stop_for(gateway, "factory_reset")["message"])
    if action == "backup":
        from mbusgw.web.transfer import backup_file, backup_response

        form = await request.form
        passphrase = form.get("passphrase") or None
        if passphrase is not None and passphrase != form.get("repeat_passphrase"):
            return back("pages.device", "Refused: the two passphrases differ")
        path, error = await attempt(lambda: backup_file(gateway, passphrase))
        if error is not None:
            return back("pages.device", f"Refused: {_detail(error)}")
        return backup_response(gateway, path)
    if action == "self-signed":
        await trio.to_thread.run_sync(state().tls.generate_self_signed, None)
        return back("pages.device", "Self-signed certificate generated")
    if action == "https":
        form = await request.form
        changes = {
            "https": form.get("https") == "on",
            "client_certificates": form.get("client_certificates", "off"),
        }
        if form.get("https_port", "").isdigit():
            changes["https_port"] = int(form["https_port"])
        settings, error = await attempt(lambda: _async(state().tls.update_settings, changes))
        if error is not None:
            return back("pages.device", f"Refused: {_detail(error)}")
        state().tls_settings = settings
        state().reload_server()
        return back("pages.device", "HTTPS settings saved; the web server restarts")
    if action == "config":
        data, _ = await uploaded_file()
        _, error = await attempt(lambda: _import_config(text_of(data)))
        if error is not None:
            return back("pages.device", f"Configuration refused: {_detail(error)}")
        return back("pages.device", "Configuration imported")
    raise BadRequest(f"unknown device action {action!r}")


async def _import_config(text: str) -> None:
    from mbusgw.web.transfer import import_config

    await import_config(gw(), text)


@blueprint.get("/device/configuration.toml")
async def configuration_file() -> Response:
    from mbusgw.web.transfer import export_config

    response = Response(export_config(gw(), arg_bool("passwords")), mimetype="application/toml")
    response.headers["Content-Disposition"] = 'attachment; filename="mbusgw-config.toml"'
    return response


@blueprint.get("/log.csv")
async def system_log_csv() -> Response:
    out = io.StringIO()
    where = ops.log_filter(**query_filters(local_zone(gw().settings.timezone)))
    await trio.to_thread.run_sync(gw().store.export_system_log, out, where)
    response = Response(out.getvalue(), mimetype="text/csv")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    response.headers["Content-Disposition"] = f'attachment; filename="system-log-{stamp}.csv"'
    return response


def _detail(error: ApiError | ConfigError | None) -> str:
    if error is None:
        return ""
    details = getattr(error, "details", None)
    if isinstance(details, dict) and details:
        return "; ".join(f"{k}: {v}" for k, v in details.items())
    if isinstance(details, list) and details:
        return "; ".join(str(d.get("message", d)) for d in details[:5])
    return error.message if isinstance(error, ApiError) else str(error)
