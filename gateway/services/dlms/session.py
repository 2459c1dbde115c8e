"""The DLMS/COSEM server's connections: the wrapper frames of each connection and the
association they carry, answered from the COSEM model (docs/dlms.md). Loaded when the server
starts listening, and with it the protocol library (``dlms_cosem``): a gateway with the
server switched off (the default) does not hold it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import trio
from dlms_cosem.protocol.wrappers import WrapperHeader, WrapperProtocolDataUnit

from mbusgw.gateway.dlms_settings import DlmsSettings
from mbusgw.gateway.facade import GatewayHandle
from mbusgw.gateway.services.dlms.association import (
    AARQ,
    GET_RESPONSE,
    LLS_CLIENT,
    Association,
    Garbage,
)
from mbusgw.gateway.services.dlms.counters import DlmsCounters
from mbusgw.gateway.services.dlms.objects import CosemModel, Identity
from mbusgw.gateway.services.modbus_stored import StoredValuesSource

logger = logging.getLogger("mbusgw.dlms")

ORIGIN = "dlms"
SERVICE_KEY = "service:dlms"  # the login limiter's key for the server as a whole
HEADER_SIZE = 8
WRAPPER_VERSION = 1
LOGICAL_DEVICE = 1  # the management logical device: the only one
MAX_FRAME = 2048  # an APDU this long is no request of ours (AARQ and GET are < 200 bytes)
RECEIVE_SIZE = 4096
NORMAL, WITH_BLOCK = 1, 2  # GET-Response choices


class Sessions:
    """The server's connections, answered from one model of ``source``'s values; they count
    in ``counters``."""

    def __init__(
        self,
        gateway: GatewayHandle,
        source: StoredValuesSource,
        counters: DlmsCounters,
        version: str,
    ) -> None:
        self.gateway = gateway
        self.counters = counters
        self.version = version
        self.last_refusal: str | None = None  # the latest refused association's reason
        self.model = CosemModel(source.meters, source.values, self._local_now, self._id)

    def _settings(self) -> DlmsSettings:
        return self.gateway.settings.dlms

    def _local_now(self) -> datetime:
        return self.gateway.clock.now().astimezone(ZoneInfo(self.gateway.settings.timezone))

    def _id(self) -> Identity:
        return Identity(self.gateway.settings.identity.device_name, self.version)

    async def connection(self, stream: trio.SocketStream) -> None:
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
