"""What one web app keeps: the gateway's façade, the accounts and sessions, the HTTPS files,
the jobs. It hangs off ``app.extensions["mbusgw"]``; blueprints reach it through ``state()``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quart import current_app

from mbusgw.gateway.facade import GatewayHandle, KeyStore
from mbusgw.web.auth import Auth
from mbusgw.web.tls import TlsFiles, TlsSettings


@dataclass
class WebState:
    gateway: GatewayHandle
    auth: Auth
    tls: TlsFiles
    tls_settings: TlsSettings = field(default_factory=TlsSettings)
    jobs: Any = None  # a JobBoard
    openapi: str | None = None  # the document's JSON text, written on the first request
    reload_server: Callable[[], None] = lambda: None  # set by the web service

    @property
    def keys(self) -> KeyStore:
        """The gateway's key store (persistent: in the store)."""
        return self.gateway.keys


def state() -> WebState:
    return current_app.extensions["mbusgw"]
