"""The web server as a supervised service: hypercorn's trio worker serving ``create_app``.

HTTP always listens on the start-up file's host and port. With HTTPS switched on (``tls.json``
in the data directory, see ``web/tls.py``) HTTPS listens on its own port with the stored
certificate and, when client certificates are required, only clients whose certificate was
issued by the trust store complete the handshake. A change of the HTTPS settings restarts this
service in place (``WebService.reload``); the app, and with it the signed-in sessions, stays.
"""

from __future__ import annotations

import logging
import ssl
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Quart

from mbusgw.gateway.facade import GatewayHandle
from mbusgw.web.app import BODY_TIMEOUT_S, MAX_UPLOAD_BYTES, create_app
from mbusgw.web.bodies import BodyBeforeResponse
from mbusgw.web.tls import TlsFiles

log = logging.getLogger("mbusgw.web")

STARTUP_TIMEOUT = 600.0  # seconds the app's start-up may take


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_config(host: str, port: int, tls: TlsFiles) -> Config:
    """Hypercorn's configuration for the current HTTPS settings and files."""
    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("mbusgw.web.server")
    config.graceful_timeout = 3.0
    # a gateway starting on a slow or busy CPU lets its web finish starting: after hypercorn's
    # 60 s the supervisor would start it again, which only needs the CPU once more
    config.startup_timeout = STARTUP_TIMEOUT
    config.include_server_header = False
    settings = tls.settings()
    if settings.https and tls.has_certificate():
        config.bind = [_bind(host, settings.https_port)]
        config.insecure_bind = [_bind(host, port)]
        config.certfile = str(tls.cert_path)
        config.keyfile = str(tls.key_path)
        if settings.client_certificates == "required":
            config.ca_certs = str(tls.trust_path)
            config.verify_mode = ssl.CERT_REQUIRED
    else:
        config.bind = [_bind(host, port)]
    return config


def web_service(gateway: GatewayHandle) -> WebService:
    """The web as a northbound service (entry point ``mbusgw.northbound``), on the start-up
    file's host and port."""
    return WebService(gateway, gateway.startup.web_host, gateway.startup.web_port)


class WebService:
    """Service ``web``: ready (``task_status.started(urls)``) once every socket listens.

    ``reload()`` (a change of the HTTPS settings) stops accepting, lets the requests in flight
    finish (the one that asked for the reload gets its answer), and serves again with the new
    settings; the app and its sessions stay.
    """

    name = "web"

    def __init__(self, gateway: GatewayHandle, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.gateway = gateway
        self.host = host
        self.port = port
        self.urls: list[str] = []
        self.reloads = 0
        self._app: Quart | None = None
        self._reload = trio.Event()
        self._stopping = False

    @property
    def app(self) -> Quart:
        if self._app is None:
            self._app = create_app(self.gateway)
            self._app.extensions["mbusgw"].reload_server = self.reload
            # hypercorn cannot reuse a connection answered before its request body arrived
            self._app.asgi_app = BodyBeforeResponse(
                self._app.asgi_app, BODY_TIMEOUT_S, MAX_UPLOAD_BYTES
            )
        return self._app

    def reload(self) -> None:
        self._reload.set()

    def stop(self) -> None:
        """Stop accepting; ``run`` returns once the requests in flight are answered (hypercorn
        waits for them up to its graceful timeout)."""
        self._stopping = True
        self._reload.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        tls = self.app.extensions["mbusgw"].tls
        while not self._stopping:
            self._reload = trio.Event()
            config = server_config(self.host, self.port, tls)
            async with trio.open_nursery() as nursery:
                self.urls = await nursery.start(
                    partial(serve, self.app, config, shutdown_trigger=self._reload.wait)
                )
                log.info("web interface on %s", ", ".join(self.urls))
                if task_status is not None:
                    task_status.started(self.urls)
                    task_status = None
            if self._stopping:
                return
            self.reloads += 1
