"""The Modbus TCP server: pymodbus's TCP server inside the trio program, answering from the map.

pymodbus is asyncio-only, so the service opens a ``trio_asyncio`` loop and runs
``ModbusGatewayServer`` (a ``pymodbus.server.ModbusTcpServer``) in it: pymodbus owns the
listening socket and the connections' transports. Each connection is a ``ModbusConnection``
(a pymodbus transport protocol) that frames requests and answers them at once from the
``RegisterMap``, without a task per request. It replaces pymodbus's stock request handler,
which (in 3.16) drops a second request that arrives in the same segment, answers a count above
125 or an unknown function with a malformed exception (function code 0x80), stays silent on a
bad MBAP header, and has no connection limit or back-pressure.

Rules a client meets (docs/modbus.md):
- FC 3 and FC 4 read the same registers; any other function: exception 01.
- A count outside 1–125 or a PDU of the wrong length: exception 03.
- Registers outside the map: exception 02, or zeros when ``invalid_addresses = "zero_fill"``.
- An unknown unit id: exception 0A (gateway path unavailable).
- A bad MBAP header (protocol id not 0, impossible length): the connection is closed, since a
  TCP byte stream cannot be resynchronised.
- Beyond ``max_connections`` a new connection is accepted and closed at once.
- A connection without a complete request for ``idle_timeout_s`` is closed.
- A client that sends without reading its answers is paused (its answers wait in the socket's
  send buffer), and one that pipelines many requests is served a batch at a time, so neither
  can hold up the others.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
import trio_asyncio
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice
from pymodbus.transport import CommParams, CommType, ModbusProtocol

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.services.modbus_map import ExceptionCode, MapConfig, RegisterMap, map_csv
from mbusgw.gateway.services.modbus_source import ModbusSource
from mbusgw.gateway.settings import ModbusSettings

logger = logging.getLogger("mbusgw.modbus")

MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
READ_REQUEST = struct.Struct(">BHH")  # function, address, count
MAX_PDU = 253
BATCH = 16  # requests answered from one client before the others get a turn
MAX_BACKLOG = 1 << 20  # bytes buffered from one client before it is closed as a flood
READ_FUNCTIONS = (3, 4)


@dataclass
class ModbusStats:
    connections: int = 0  # open now
    accepted: int = 0
    refused: int = 0
    requests: int = 0
    exceptions: int = 0
    closed_bad_frame: int = 0
    closed_idle: int = 0
    closed_flood: int = 0


def _exception_frame(tid: int, unit: int, function: int, code: int) -> bytes:
    return MBAP.pack(tid, 0, 3, unit) + bytes((function | 0x80, code))


def _connection_params(name: str) -> CommParams:
    return CommParams(
        comm_name=name,
        comm_type=CommType.TCP,
        reconnect_delay=0.0,
        reconnect_delay_max=0.0,
        timeout_connect=0.0,
    )


class ModbusConnection(ModbusProtocol):
    """One client: MBAP framing and answers straight from the register map."""

    def __init__(self, server: ModbusGatewayServer) -> None:
        super().__init__(_connection_params("modbus client"), True)
        self.server = server
        self.last_request = trio.current_time()
        self._buffer = bytearray()
        self._write_paused = False
        self._backlogged = False
        self._counted = True

    # asyncio protocol ------------------------------------------------------

    def callback_connected(self) -> None:
        self.last_request = trio.current_time()

    def callback_disconnected(self, exc: Exception | None) -> None:
        self._forget()

    def callback_new_connection(self) -> ModbusProtocol:
        raise RuntimeError("a client connection does not accept connections")

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def close(self, reconnect: bool = False) -> None:
        self._forget()
        super().close(reconnect)

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its requests until it does.
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > MAX_BACKLOG:
            self.server.stats.closed_flood += 1
            logger.warning("Modbus client %s flooded the server; closed", self._peer())
            self.close()
            return
        self._serve_batch()

    # framing ---------------------------------------------------------------

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        """Answer up to ``BATCH`` complete requests at the start of ``data``; returns the bytes
        used (all of them when the stream is not Modbus TCP and the connection is closed)."""
        used = 0
        for _ in range(BATCH):
            if len(data) - used < MBAP.size:
                break
            tid, protocol, length, unit = MBAP.unpack_from(data, used)
            if protocol != 0 or not 2 <= length <= MAX_PDU + 1:
                self.server.stats.closed_bad_frame += 1
                logger.warning("Modbus client %s sent a bad MBAP header; closed", self._peer())
                self.close()
                return len(data)
            end = used + 6 + length
            if len(data) < end:
                break
            self.transport.write(self.server.answer(tid, unit, bytes(data[used + 7 : end])))
            self.last_request = trio.current_time()
            used = end
        return used

    def _serve_batch(self) -> None:
        if self.transport is None:
            return
        used = self.callback_data(self._buffer)
        if self.transport is None:
            return
        del self._buffer[:used]
        more = len(self._buffer) >= MBAP.size and self._complete_request_waiting()
        if more != self._backlogged:
            self._backlogged = more
            self._update_reading()
        if more:
            self.loop.call_soon(self._serve_batch)

    def _complete_request_waiting(self) -> bool:
        length = int.from_bytes(self._buffer[4:6], "big")
        return len(self._buffer) >= 6 + length or length > MAX_PDU + 1

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._write_paused or self._backlogged:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _forget(self) -> None:
        if self._counted:
            self._counted = False
            self.server.connection_closed(self)

    def _peer(self) -> str:
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        return f"{peer[0]}:{peer[1]}" if peer else "(gone)"


class RefusedConnection(ModbusProtocol):
    """Beyond the connection limit: accepted and closed at once, so the client knows."""

    def __init__(self) -> None:
        super().__init__(_connection_params("refused client"), True)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.close()

    def callback_connected(self) -> None:
        pass

    def callback_disconnected(self, exc: Exception | None) -> None:
        pass

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        return len(data)

    def callback_new_connection(self) -> ModbusProtocol:
        raise RuntimeError("a client connection does not accept connections")


def _placeholder_datastore() -> SimDevice:
    # pymodbus requires a datastore; requests never reach it (the connections answer from the
    # register map), and every address in it is invalid.
    return SimDevice(0, simdata=[SimData(0, datatype=SimType.INVALID)])


class ModbusGatewayServer(ModbusTcpServer):
    """pymodbus's TCP server with the gateway's connections, limit and register map."""

    def __init__(self, register_map: RegisterMap, settings: ModbusSettings) -> None:
        super().__init__(_placeholder_datastore(), address=(settings.host, settings.port))
        self.register_map = register_map
        self.max_connections = settings.max_connections
        self.idle_timeout = settings.idle_timeout_s
        self.stats = ModbusStats()
        self.clients: set[ModbusConnection] = set()

    async def listen(self) -> bool:
        # Unlike pymodbus's listen, let the OSError (port in use, no permission) through: the
        # supervisor logs it with its reason and tries again after a backoff.
        self.is_listener = True
        self.transport = await self.call_create()
        return True

    @property
    def bound_address(self) -> tuple[str, int]:
        return self.transport.sockets[0].getsockname()[:2]

    def callback_new_connection(self) -> ModbusProtocol:
        if len(self.clients) >= self.max_connections:
            self.stats.refused += 1
            logger.warning(
                "Modbus connection refused: %d connections is the limit", self.max_connections
            )
            return RefusedConnection()
        connection = ModbusConnection(self)
        self.clients.add(connection)
        self.stats.accepted += 1
        self.stats.connections = len(self.clients)
        return connection

    def connection_closed(self, connection: ModbusConnection) -> None:
        self.clients.discard(connection)
        self.stats.connections = len(self.clients)

    def close_idle(self, now: float) -> None:
        if not self.idle_timeout:
            return
        for connection in [c for c in self.clients if now - c.last_request > self.idle_timeout]:
            self.stats.closed_idle += 1
            connection.close()

    def answer(self, tid: int, unit: int, pdu: bytes) -> bytes:
        """The response frame to one request PDU."""
        self.stats.requests += 1
        function = pdu[0]
        if function not in READ_FUNCTIONS:
            code = ExceptionCode.ILLEGAL_FUNCTION
        elif len(pdu) != READ_REQUEST.size:
            code = ExceptionCode.ILLEGAL_DATA_VALUE
        else:
            _, address, count = READ_REQUEST.unpack(pdu)
            result = self.register_map.read(unit, address, count)
            if not isinstance(result, ExceptionCode):
                size = 2 * len(result)
                return MBAP.pack(tid, 0, 3 + size, unit) + struct.pack(
                    f">BB{len(result)}H", function, size, *result
                )
            code = result
        self.stats.exceptions += 1
        return _exception_frame(tid, unit, function & 0x7F, code)


class ModbusService:
    """The supervised service. Settings and source are read at every (re)start, so a settings
    change takes effect through ``Supervisor.restart(["modbus"])``."""

    name = "modbus"

    def __init__(
        self,
        settings: Callable[[], ModbusSettings],
        source: Callable[[], ModbusSource],
        clock: WallClock,
    ) -> None:
        self._settings = settings
        self._source = source
        self._clock = clock
        self.server: ModbusGatewayServer | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the server listens (the real port when the setting is 0)."""
        return self.server.bound_address if self.server is not None else None

    @property
    def stats(self) -> ModbusStats | None:
        """Connection and request counters of the running server (None while it is down)."""
        return self.server.stats if self.server is not None else None

    def map_csv(self) -> str:
        """The register map of the installed meters with the current settings, as CSV (the
        download of docs/modbus.md)."""
        settings = self._settings()
        register_map = RegisterMap(MapConfig(settings), self._source(), self._clock)
        return map_csv(register_map.rows(), settings.word_order)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        settings = self._settings()
        if not settings.enabled:
            task_status.started()
            await trio.sleep_forever()
        source = self._source()
        register_map = RegisterMap(MapConfig(settings), source, self._clock)
        async with trio.open_nursery() as nursery, trio_asyncio.open_loop():
            await nursery.start(source.follow)
            server = await trio_asyncio.aio_as_trio(self._start)(register_map, settings)
            self.server = server
            try:
                host, port = server.bound_address
                logger.info("Modbus TCP server listening on %s:%d", host, port)
                task_status.started()
                while True:
                    await trio.sleep(1.0)
                    server.close_idle(trio.current_time())
            finally:
                self.server = None
                server.close()
                nursery.cancel_scope.cancel()

    @staticmethod
    async def _start(register_map: RegisterMap, settings: ModbusSettings) -> ModbusGatewayServer:
        server = ModbusGatewayServer(register_map, settings)
        await server.serve_forever(background=True)
        return server


def choose_source(continuous: bool, live: ModbusSource, stored: ModbusSource) -> ModbusSource:
    """Continuous read mode serves the snapshot; otherwise the latest stored values."""
    return live if continuous else stored
