"""The HTML pages: server-rendered, every action a plain form post (CSRF-protected), so the
interface works without JavaScript. Two small scripts of our own add the graphs (drawn from
the API) and the live progress of searches; without them the pages still show tables.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, g, redirect, render_template, request, url_for

from mbusgw.gateway.cron import PREDEFINED
from mbusgw.gateway.settings import ConfigError
from mbusgw.web import dashboard, device_ops, meter_list
from mbusgw.web import operations as ops
from mbusgw.web.auth import admin_only, first_change, public, same_site_path, self_service
from mbusgw.web.errors import ApiError, BadRequest, as_api_error
from mbusgw.web.params import arg_bool, text_of, uploaded_file
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
    info = device_ops.device_info(gateway)
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
        counts=device_ops.meter_counts(gateway),
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
        return back("pages.installation", f"Schedule refused: {detail_text(error)}")
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
        info=device_ops.device_info(gateway),
        status=device_ops.device_status(gateway),
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
        return back("pages.meters", f"Re-install refused: {detail_text(error)}")
    moved = "; ".join(f"{m['meter']}: {m['old'] or 'none'} → {m['new']}" for m in result["moved"])
    text = f"Re-install: {len(result['moved'])} of {result['meters']} wireless meter(s) moved"
    text += f" ({moved})" if moved else ""
    if result["not_heard"]:
        text += f", {len(result['not_heard'])} not heard in the last hour"
    if meter is not None:
        return back("pages.meter", text, key=meter)
    return back("pages.meters", text)


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
        return back("pages.search", f"Search refused: {detail_text(error)}")
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
        return back("pages.job", f"Install refused: {detail_text(error)}", job=job)
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


def detail_text(error: ApiError | ConfigError | None) -> str:
    if error is None:
        return ""
    details = getattr(error, "details", None)
    if isinstance(details, dict) and details:
        return "; ".join(f"{k}: {v}" for k, v in details.items())
    if isinstance(details, list) and details:
        return "; ".join(str(d.get("message", d)) for d in details[:5])
    return error.message if isinstance(error, ApiError) else str(error)
