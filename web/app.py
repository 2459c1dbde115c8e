"""The Quart-Trio application: ``create_app(gateway)`` builds a fresh app with its own state.

Nothing is kept in module globals: the gateway, the accounts and sessions, and the HTTPS files
hang off ``app.extensions["mbusgw"]`` (a ``WebState``), so tests build as many apps as they
like. Every request passes one gate (``Auth.check_request``: who, may they, CSRF) and leaves
with the security headers below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quart import Quart, Response, redirect, request
from quart_trio import QuartTrio

from mbusgw.gateway.facade import GatewayHandle
from mbusgw.web import readable
from mbusgw.web.auth import Auth
from mbusgw.web.compress import compress
from mbusgw.web.errors import install_error_handlers
from mbusgw.web.jobs import JobBoard
from mbusgw.web.state import WebState
from mbusgw.web.times import shown_time
from mbusgw.web.tls import TlsFiles
from mbusgw.web.users import UserDirectory

MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # a backup of a large store is uploaded in one request
BODY_TIMEOUT_S = 15  # a client that announces a body and does not send it is cut off

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class _StoreRecords:
    """The store's record tables, read from the store and written through its writer."""

    def __init__(self, gateway: GatewayHandle) -> None:
        self._gateway = gateway

    def records(self, table: str) -> dict[str, object]:
        return self._gateway.store.records(table)

    async def put_record(self, table: str, name: str, record: object) -> None:
        await self._gateway.writer.put_record(table, name, record)

    async def delete_record(self, table: str, name: str) -> bool:
        return await self._gateway.writer.delete_record(table, name)


def https_redirect(host: str | None, port: int) -> Response:
    """Plain HTTP sent on to HTTPS at the configured host and port (the request's ``Host``
    header is the client's to choose and never builds the target)."""
    if host is None:
        # HTTPS serves a certificate without a usable name: say where, send nobody anywhere
        return Response(f"use HTTPS on port {port}\n", 403, content_type="text/plain")
    path = request.full_path.rstrip("?") if request.query_string else request.path
    return redirect(f"https://{host}:{port}{path}", 308)


def create_app(gateway: GatewayHandle) -> Quart:
    # admin_pages, autoconfig_views, licence_views, meter_pages: imported for their routes on the
    # API and page blueprints
    from mbusgw.web import (  # noqa: F401
        admin_pages,
        api_v1,
        autoconfig_views,
        integrations_page,
        jsonrpc,
        licence_views,
        meter_pages,
        metrics,
        modbus_page,
        pages,
        report_pages,
        slave_pages,
    )

    here = Path(__file__).parent
    # root and instance paths given: the package finder does not follow editable installs
    app = QuartTrio("mbusgw.web", root_path=str(here), instance_path=str(here / "instance"))
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        BODY_TIMEOUT=BODY_TIMEOUT_S,
        JSON_SORT_KEYS=False,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.json.sort_keys = False
    users = UserDirectory(_StoreRecords(gateway), gateway.clock.now)
    users.log = gateway.store.log.log
    tls = TlsFiles(gateway.startup.data_dir / "tls")
    auth = Auth(users, limiter=gateway.login_limiter, log=gateway.store.log.log)
    web = WebState(gateway=gateway, auth=auth, tls=tls, tls_settings=tls.settings())
    web.jobs = JobBoard(gateway, app.add_background_task)
    app.extensions["mbusgw"] = web
    app.secret_key = None

    @app.before_serving
    async def load_accounts() -> None:
        await users.load()

    @app.before_request
    async def gate() -> Any:
        settings = web.tls_settings
        if settings.https and settings.redirect_http and request.scheme == "http":
            return https_redirect(web.tls.https_host(), settings.https_port)
        return await web.auth.check_request()

    @app.after_request
    async def finish(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if "Cache-Control" not in response.headers and not request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return web.auth.set_cookie(await compress(request, response))

    # every time on a page: in the configured zone, one format (graphs get the zone's name)
    app.add_template_filter(lambda value: shown_time(value, gateway.settings.timezone), "when")
    app.context_processor(lambda: {"time_zone": gateway.settings.timezone})
    # every value on a page: the quantity in words, the number in a scaled unit
    app.add_template_filter(
        lambda series: readable.label(series, gateway.settings.conventions.language), "quantity"
    )
    app.add_template_filter(readable.value_html, "value_html")
    app.add_template_filter(readable.job_title, "job_title")
    install_error_handlers(app)
    app.register_blueprint(api_v1.blueprint)
    app.register_blueprint(jsonrpc.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(report_pages.blueprint)
    app.register_blueprint(modbus_page.blueprint)
    app.register_blueprint(slave_pages.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(integrations_page.blueprint)
    return app
