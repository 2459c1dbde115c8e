"""Service ``dlms``: the DLMS/COSEM server on TCP with the wrapper (IEC 62056-47), one logical
device (wPort 1) holding the gateway's objects (docs/dlms.md).

Rules a client meets:
- Each wrapper frame carries one APDU; frames split over segments or several in one segment
  are taken as they come. A header that is not version 1, names another logical device, or
  announces more than ``MAX_FRAME`` bytes, and an APDU the server cannot parse, close the
  connection: a TCP byte stream cannot be resynchronised.
- Beyond ``max_connections`` a new connection is closed at once; a connection without a
  whole request answered for ``idle_timeout_s`` (silent, trickling bytes, or not reading its
  answers) is closed.
- A refused association is answered with its AARE diagnostic and logged with the reason
  (never the password); the client may try again on the same connection. Wrong LLS passwords
  count toward the gateway's login limiting (per address and for the server, together with
  the web's and the terminal's): beyond it, client 17 is turned away (rejected-transient)
  until the window has passed, whatever password it gives.

The values come from the latest stored readings (the store REST reads, through the Modbus
map's stored-values source). Passwords, the public client switch and the limits are read for
every connection and association; a change of the address, port or switch restarts the
listener.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import trio

from mbusgw.gateway.dlms_settings import DlmsSettings
from mbusgw.gateway.events import SETTINGS_CHANGED
from mbusgw.gateway.facade import GatewayHandle
from mbusgw.gateway.services.dlms.counters import DlmsCounters
from mbusgw.gateway.services.following import SettingsFollower
from mbusgw.gateway.services.modbus_stored import StoredValuesSource
from mbusgw.gateway.services.snmp.objects import package_version

if TYPE_CHECKING:  # the protocol (dlms_cosem) is loaded when the server listens (_serve)
    from mbusgw.gateway.services.dlms.session import Sessions

logger = logging.getLogger("mbusgw.dlms")


def dlms_service(gateway: GatewayHandle) -> DlmsService:
    """The server as a northbound service (entry point ``mbusgw.northbound``)."""
    return DlmsService(gateway)


class DlmsService:
    name = "dlms"

    def __init__(self, gateway: GatewayHandle) -> None:
        self.gateway = gateway
        self.source = StoredValuesSource(
            gateway.store, lambda: gateway.meters, gateway.clock, gateway.events
        )
        self.address: tuple[str, int] | None = None
        self.counters = DlmsCounters()
        self.version = package_version()
        self._follower = SettingsFollower()
        self._sessions: Sessions | None = None

    def _settings(self) -> DlmsSettings:
        return self.gateway.settings.dlms

    def status(self) -> dict[str, Any]:
        settings = self._settings()
        return {
            "enabled": settings.enabled,
            "address": f"{self.address[0]}:{self.address[1]}" if self.address else None,
            "public_client": settings.public_client,
            "lls_password_set": bool(settings.lls_password),
            **asdict(self.counters),
            "last_refusal": self._sessions.last_refusal if self._sessions else None,
        }

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_settings, self._listener(self._settings()))
            await self._follower.run(self._settings, self._serve, task_status, self._idle)

    def _idle(self) -> None:
        self.address = None

    @staticmethod
    def _listener(settings: DlmsSettings) -> tuple[bool, str, int]:
        return settings.enabled, settings.host, settings.port

    async def _follow_settings(self, listener: tuple[bool, str, int]) -> None:
        with self.gateway.events.subscribe() as events:
            async for event in events:
                if event.kind == SETTINGS_CHANGED and "dlms" in event.detail.get("sections", ()):
                    now = self._listener(self._settings())
                    if now != listener:
                        listener = now
                        self._follower.changed()

    async def _serve(self, settings: DlmsSettings, task_status: Any) -> None:
        from mbusgw.gateway.services.dlms.session import Sessions

        if self._sessions is None:
            self._sessions = Sessions(self.gateway, self.source, self.counters, self.version)
        # An OSError (port in use) goes up as it is: the supervisor logs it and tries again.
        listeners = await trio.open_tcp_listeners(settings.port, host=settings.host)
        self.address = listeners[0].socket.getsockname()[:2]
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.source.follow)  # every meter loaded before a GET
                nursery.start_soon(trio.serve_listeners, self._sessions.connection, listeners)
                logger.info("DLMS/COSEM server on %s port %d", *self.address)
                task_status.started(self.address)
        finally:
            self.address = None
