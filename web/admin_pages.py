"""The administration pages: the system log, keys, users, the device (restart, backups, the
configuration file); routes of the pages blueprint."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import trio
from quart import Response, request

from mbusgw.web import device_ops, key_ops
from mbusgw.web import operations as ops
from mbusgw.web.auth import admin_only
from mbusgw.web.errors import BadRequest
from mbusgw.web.pages import attempt, back, blueprint, detail_text, page
from mbusgw.web.params import arg_bool, query_filters, text_of, uploaded_file
from mbusgw.web.routes import gw
from mbusgw.web.state import state
from mbusgw.web.times import local_zone

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
            _, error = await attempt(lambda: key_ops.remove_key(state(), int(entry or -1)))
            if error is None:
                return back("pages.keys", f"Key entry {entry} removed")
        elif form.get("action") == "upload":
            data, name = await uploaded_file()
            result, error = await attempt(
                lambda: key_ops.import_keys(state(), data, name, form.get("replace") == "on")
            )
            if error is None:
                return back("pages.keys", f"{result['added']} keys added")
        else:
            entry = {k: form.get(k) or None for k in ("address", "manufacturer")}
            entry["key"] = form.get("key", "")
            _, error = await attempt(lambda: key_ops.add_key(state(), entry))
            if error is None:
                return back("pages.keys", "Key added")
    return await page("keys.html", listing=key_ops.key_listing(state()), error=error), (
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
    return await page("device.html", info=device_ops.device_info(gw()), tls=state().tls.status())


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
            return back("pages.device", f"Refused: {detail_text(error)}")
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
            return back("pages.device", f"Refused: {detail_text(error)}")
        state().tls_settings = settings
        state().reload_server()
        return back("pages.device", "HTTPS settings saved; the web server restarts")
    if action == "config":
        data, _ = await uploaded_file()
        _, error = await attempt(lambda: _import_config(text_of(data)))
        if error is not None:
            return back("pages.device", f"Configuration refused: {detail_text(error)}")
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
