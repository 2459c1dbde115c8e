"""The administration routes of ``/api/v1``: users and the own account, HTTPS, the
configuration file and backups (they join the route table of ``web/api_v1.py``)."""

from __future__ import annotations

from typing import Any

import trio
from quart import Response, g

from mbusgw.web import operations as ops
from mbusgw.web.api_schemas import BOOL, STR
from mbusgw.web.auth import first_change
from mbusgw.web.errors import BadRequest, Unauthorized
from mbusgw.web.openapi import Param
from mbusgw.web.params import (
    arg_bool,
    json_body,
    text_of,
    uploaded_file,
)
from mbusgw.web.routes import (
    download,
    gw,
    reply,
    route,
)
from mbusgw.web.state import state
from mbusgw.web.tls import HOSTNAME

# ---------------------------------------------------------------------------- users


def _users() -> Any:
    return state().auth.users


@route("GET", "/users", "Accounts", "users", access="admin", response="UserList")
async def users_list() -> Response:
    return reply({"users": [u.public() for u in _users().all()]})


@route("POST", "/users", "Add an account", "users", access="admin", body="NewUser",
       response="User", status=201)  # fmt: skip
async def users_add() -> Response:
    body = await json_body()
    user = await _users().add(body.get("name"), body.get("password"), body.get("role"))
    return reply(user.public(), 201)


USER = Param("name", STR, "user name", where="path")


@route("PATCH", "/users/{name}", "Change an account's password or role", "users",
       access="admin", params=(USER,), body="UserChange", response="User")  # fmt: skip
async def users_update(name: str) -> Response:
    body = await json_body()
    unknown = set(body) - {"password", "role"}
    if unknown:
        raise BadRequest("unknown fields", {n: "unknown field" for n in unknown})
    user = await _users().update(name, password=body.get("password"), role=body.get("role"))
    if "password" in body:
        state().auth.password_changed(name, user)
    return reply(user.public())


@route("DELETE", "/users/{name}", "Delete an account", "users", access="admin",
       params=(USER,), response="Ok")  # fmt: skip
async def users_delete(name: str) -> Response:
    await _users().delete(name)
    state().auth.sessions.drop_user(name)
    return reply({"ok": True, "message": f"user {name} deleted"})


@first_change
@route("GET", "/me", "The signed-in account", "users", access="self", response="User")
async def me() -> Response:
    return reply(g.user.public())


@first_change
@route("POST", "/me/password", "Change the own password (and, on the first login, the name)",
       "users", access="self", body="PasswordChange", response="User")  # fmt: skip
async def me_password() -> Response:
    body = await json_body()
    web = state()
    user = g.user
    if await web.auth.users.verify(user.name, str(body.get("current_password", ""))) is None:
        raise Unauthorized("the current password is wrong")
    if user.must_change:
        new_name = body.get("new_username")
        updated = await web.auth.users.complete_first_login(
            user.name, new_name, body.get("new_password")
        )
    else:
        updated = await web.auth.users.update(user.name, password=body.get("new_password"))
    web.auth.password_changed(user.name, updated)
    return reply(updated.public())


@route("POST", "/me/tokens", "Create an API token (shown once)", "users", access="self",
       body="NewToken", response="Token", status=201)  # fmt: skip
async def me_token_create() -> Response:
    body = await json_body()
    token = await state().auth.users.create_token(g.user.name, str(body.get("label", "")))
    return reply({"token": token, "warning": "shown only now; store it safely"}, 201)


@route("DELETE", "/me/tokens/{token}", "Revoke an API token", "users", access="self",
       params=(Param("token", STR, "token id", where="path"),), response="User")  # fmt: skip
async def me_token_delete(token: str) -> Response:
    await state().auth.users.delete_token(g.user.name, token)
    return reply(state().auth.users.require(g.user.name).public())


# ---------------------------------------------------------------------------- HTTPS


@route("GET", "/tls", "HTTPS settings, server certificate and client trust store", "https",
       access="admin", response="TlsStatus")  # fmt: skip
async def tls_status() -> Response:
    return reply(state().tls.status())


@route("PATCH", "/tls", "Change the HTTPS settings (restarts the web server)", "https",
       access="admin", body="TlsSettingsChange", response="TlsStatus")  # fmt: skip
async def tls_update() -> Response:
    web = state()
    web.tls_settings = web.tls.update_settings(await json_body())
    web.reload_server()
    return reply(web.tls.status())


@route("POST", "/tls/certificate", "Upload the server certificate (PEM with key, or PKCS#12)",
       "https", access="admin", body="file", response="Certificate")  # fmt: skip
async def tls_certificate() -> Response:
    from quart import request

    tls = state().tls
    if request.mimetype == "multipart/form-data":
        form, files = await request.form, await request.files
        password = (form.get("password") or "").encode() or None
        cert = files.get("file")
        key = files.get("key")
        if cert is None:
            raise BadRequest("no certificate file", {"file": "required"})
        if key is not None:
            return reply(tls.install_pem(cert.read(), key.read(), password))
        data = cert.read()
    else:
        data, password = await request.get_data(as_text=False), None
    if b"-----BEGIN" in data:
        return reply(tls.install_pem(data, data, password))
    return reply(tls.install_pkcs12(data, password))


@route("POST", "/tls/self-signed", "Generate a self-signed server certificate", "https",
       access="admin", body="SelfSigned", response="Certificate")  # fmt: skip
async def tls_self_signed() -> Response:
    body = await json_body()
    hostname = body.get("hostname")
    if hostname is not None and not (isinstance(hostname, str) and HOSTNAME.match(hostname)):
        raise BadRequest("not a host name", {"hostname": "letters, digits, '-' and '.'"})
    cert = await trio.to_thread.run_sync(state().tls.generate_self_signed, hostname or None)
    return reply(cert)


@route("PUT", "/tls/trust-store", "Replace the client-certificate trust store (PEM)", "https",
       access="admin", body="file", response="TlsStatus")  # fmt: skip
async def tls_trust_store() -> Response:
    data, _ = await uploaded_file()
    state().tls.set_trust_store(data)
    return reply(state().tls.status())


# ---------------------------------------------------------------------------- files


PASSWORDS = Param("passwords", BOOL, "include passwords (admin only). Default false: a set "
                  "password is written as ******** and an import keeps the stored one")  # fmt: skip


@route("GET", "/config", "The configuration file (every setting that is not device-specific)",
       "device", media="toml", params=(PASSWORDS,))  # fmt: skip
async def config_download() -> Response:
    from mbusgw.web.transfer import export_config

    text = export_config(gw(), arg_bool("passwords", False))
    return download(text, "application/toml", "mbusgw-config.toml")


@route("PUT", "/config", "Import a configuration file (checked completely, then applied)",
       "device", access="admin", body="file", response="Settings")  # fmt: skip
async def config_upload() -> Response:
    from mbusgw.web.transfer import import_config

    data, _ = await uploaded_file()
    return reply(await import_config(gw(), text_of(data)))


PASSPHRASE = Param("X-Backup-Passphrase", STR, "download: include the secrets (meter keys, "
                   "passwords), sealed with this passphrase (at least 8 characters); restore: "
                   "the passphrase of a backup that carries secrets", where="header")  # fmt: skip


@route("GET", "/backup", "A backup of all values and settings (secrets only with a passphrase)",
       "device", access="admin", media="binary", params=(PASSPHRASE,))  # fmt: skip
async def backup_download() -> Response:
    from quart import request

    from mbusgw.web.transfer import backup_file, backup_response

    path = await backup_file(gw(), request.headers.get(PASSPHRASE.name))
    return backup_response(gw(), path)


@route("POST", "/backup", "Restore a backup (checked first; the gateway restarts)", "device",
       access="admin", body="file", response="Ok", status=202, params=(PASSPHRASE,))  # fmt: skip
async def backup_restore() -> Response:
    from quart import request

    from mbusgw.web.transfer import stage_restore

    passphrase = request.headers.get(PASSPHRASE.name)
    path = await stage_restore(gw(), request.body, passphrase)
    return reply(ops.stop_for(gw(), "restore", path, passphrase), 202)
