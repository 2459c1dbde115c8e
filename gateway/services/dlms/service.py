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
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import trio
from dlms_cosem.protocol.wrappers import WrapperHeader, WrapperProtocolDataUnit

from mbusgw.gateway.dlms_settings import DlmsSettings
from mbusgw.gateway.events import SETTINGS_CHANGED
from mbusgw.gateway.facade import GatewayHandle
from mbusgw.gateway.services.dlms.association import (
    AARQ,
    GET_RESPONSE,
    LLS_CLIENT,
    Association,
    Garbage,
)
from mbusgw.gateway.services.dlms.objects import CosemModel, Identity
from mbusgw.gateway.services.following import SettingsFollower
from mbusgw.gateway.services.modbus_stored import StoredValuesSource
from mbusgw.gateway.services.snmp.objects import package_version

logger = logging.getLogger("mbusgw.dlms")

ORIGIN = "dlms"
SERVICE_KEY = "service:dlms"  # the login limiter's key for the server as a whole
HEADER_SIZE = 8
WRAPPER_VERSION = 1
LOGICAL_DEVICE = 1  # the management logical device: the only one
MAX_FRAME = 2048  # an APDU this long is no request of ours (AARQ and GET are < 200 bytes)
RECEIVE_SIZE = 4096
NORMAL, WITH_BLOCK = 1, 2  # GET-Response choices


@dataclass
class DlmsCounters:
    """Since the service started."""

    connections: int = 0  # open now
    accepted: int = 0
    refused: int = 0  # beyond max_connections
    associations: int = 0
    associations_refused: int = 0
    requests: int = 0  # GET requests answered (each block of a long answer counts)
    errors: int = 0  # of them, answered with a data-access-result error
    closed_garbage: int = 0
    closed_idle: int = 0


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
        self.model = CosemModel(self.source.meters, self.source.values, self._local_now, self._id)
        self.address: tuple[str, int] | None = None
        self.counters = DlmsCounters()
        self.last_refusal: str | None = None  # the latest refused association's reason
        self._follower = SettingsFollower()
        self._version = package_version()

    def _settings(self) -> DlmsSettings:
        return self.gateway.settings.dlms

    def _local_now(self) -> datetime:
        return self.gateway.clock.now().astimezone(ZoneInfo(self.gateway.settings.timezone))

    def _id(self) -> Identity:
        return Identity(self.gateway.settings.identity.device_name, self._version)

    def status(self) -> dict[str, Any]:
        settings = self._settings()
        return {
            "enabled": settings.enabled,
            "address": f"{self.address[0]}:{self.address[1]}" if self.address else None,
            "public_client": settings.public_client,
            "lls_password_set": bool(settings.lls_password),
            **asdict(self.counters),
            "last_refusal": self.last_refusal,
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
        # An OSError (port in use) goes up as it is: the supervisor logs it and tries again.
        listeners = await trio.open_tcp_listeners(settings.port, host=settings.host)
        self.address = listeners[0].socket.getsockname()[:2]
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.source.follow)  # every meter loaded before a GET
                nursery.start_soon(trio.serve_listeners, self._connection, listeners)
                logger.info("DLMS/COSEM server on %s port %d", *self.address)
                task_status.started(self.address)
        finally:
            self.address = None

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            peer = str(stream.socket.getpeername()[0])
        except OSError:  # reset before it was served
            await trio.aclose_forcefully(stream)
            return
        settings = self._settings()
        counters = self.counters
        if counters.connections >= settings.max_connections:
            counters.refused += 1
            self.gateway.store.log.warning(
                ORIGIN, f"{peer} turned away: {settings.max_connections} connections is the limit"
            )
            await trio.aclose_forcefully(stream)
            return
        counters.accepted += 1
        counters.connections += 1
        idle = settings.idle_timeout_s
        try:
            # the deadline moves on with every answered request: a client that sends nothing
            # whole, or does not read its answers, for ``idle`` seconds is closed
            with trio.CancelScope(deadline=trio.current_time() + idle) as scope:
                await self._session(stream, peer, scope)
            if scope.cancelled_caught:
                counters.closed_idle += 1
        except Garbage as exc:
            counters.closed_garbage += 1
            self.gateway.store.log.warning(ORIGIN, f"{peer} closed: {exc}")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        except Exception as exc:  # one broken connection must not end the service
            logger.exception("DLMS connection of %s failed", peer)
            self.gateway.store.log.error(ORIGIN, f"connection of {peer} failed: {exc!r}")
        finally:
            counters.connections -= 1
            await trio.aclose_forcefully(stream)

    async def _session(self, stream: trio.SocketStream, peer: str, idle: trio.CancelScope) -> None:
        buffer = bytearray()
        association: Association | None = None
        while data := await stream.receive_some(RECEIVE_SIZE):
            buffer += data
            while len(buffer) >= HEADER_SIZE:
                header = WrapperHeader.from_bytes(bytes(buffer[:HEADER_SIZE]))
                if header.version != WRAPPER_VERSION or not 0 < header.length <= MAX_FRAME:
                    raise Garbage("not a DLMS/COSEM wrapper header")
                if header.destination_wport != LOGICAL_DEVICE:
                    raise Garbage(f"no logical device {header.destination_wport}")
                end = HEADER_SIZE + header.length
                if len(buffer) < end:
                    break
                apdu = bytes(buffer[HEADER_SIZE:end])
                del buffer[:end]
                if association is None or association.client_sap != header.source_wport:
                    association = Association(self.model, header.source_wport, self._settings())
                elif apdu[0] == AARQ:  # the password or switch may have changed meanwhile
                    association.settings = self._settings()
                wait = self._locked_out(peer) if apdu[0] == AARQ else 0
                if wait and association.client_sap == LLS_CLIENT:
                    reply = association.refuse_for_now(f"too many wrong passwords; {wait} s")
                else:
                    reply = association.answer(apdu)
                self._count(association, apdu, reply, peer)
                frame = WrapperProtocolDataUnit(
                    reply, WrapperHeader(LOGICAL_DEVICE, header.source_wport, len(reply))
                )
                await stream.send_all(frame.to_bytes())
                idle.deadline = trio.current_time() + self._settings().idle_timeout_s

    @staticmethod
    def _limiter_keys(peer: str) -> tuple[str, str]:
        return f"addr:{peer}", SERVICE_KEY

    def _locked_out(self, peer: str) -> int:
        """Seconds before an LLS association may be tried from ``peer`` again (0: now)."""
        return self.gateway.login_limiter.wait_s(*self._limiter_keys(peer))

    def _count(self, association: Association, apdu: bytes, reply: bytes, peer: str) -> None:
        if apdu[0] == AARQ and association.last_outcome is not None:
            outcome = association.last_outcome
            if outcome.accepted:
                self.counters.associations += 1
                if association.client_sap == LLS_CLIENT:
                    self.gateway.login_limiter.succeeded(SERVICE_KEY)
                return
            self.counters.associations_refused += 1
            if outcome.wrong_password:
                self.gateway.login_limiter.failed(*self._limiter_keys(peer))
            self.last_refusal = f"client {association.client_sap}: {outcome.reason}"
            self.gateway.store.log.warning(
                ORIGIN, f"{peer}: association refused, {self.last_refusal}"
            )
        elif reply[0] == GET_RESPONSE:  # normal: data or an error; or a block of a long get
            self.counters.requests += 1
            normal_error = reply[1] == NORMAL and reply[3] == 1
            self.counters.errors += normal_error or (reply[1] == WITH_BLOCK and reply[8] == 1)
