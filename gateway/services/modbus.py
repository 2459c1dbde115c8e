"""The Modbus service: TCP (and RTU on a serial port when one is set) answering from the map.

The service runs on trio alone: ``modbus_tcp`` serves TCP connections with ``trio.serve_tcp``,
``modbus_rtu`` a serial slave port, both through one ``Responder`` that answers from one
``RegisterMap``. pymodbus is the protocol library (framers, request decoding, exception PDUs),
not the server. ``keep_image`` keeps the map's register image current off the request path:
when the source's values of a meter change, that meter's block (and the device block) is
encoded again between requests, one meter at a time, and requests only copy bytes.

The service reaches the gateway through the façade (``modbus_service(gateway)``) and the data
model only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.facade import GatewayHandle, open_serial_port
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.services.modbus_csv import map_csv
from mbusgw.gateway.services.modbus_demand import ImageDemand
from mbusgw.gateway.services.modbus_map import MapConfig, RegisterMap
from mbusgw.gateway.services.modbus_source import LiveSnapshotSource, ModbusSource
from mbusgw.gateway.services.modbus_stored import StoredValuesSource
from mbusgw.gateway.settings import ModbusSettings

if TYPE_CHECKING:  # pymodbus is loaded when the service is switched on (run)
    from mbusgw.gateway.services.modbus_pdu import ModbusStats, Responder
    from mbusgw.gateway.services.modbus_rtu import SerialOpener
    from mbusgw.gateway.services.modbus_tcp import TcpServer

logger = logging.getLogger("mbusgw.modbus")
RTU_RETRY_S = 1.0
RTU_RETRY_MAX_S = 60.0

__all__ = ["ModbusService", "choose_source", "keep_image", "modbus_service"]


async def keep_image(
    register_map: RegisterMap,
    source: ModbusSource,
    demand: ImageDemand | None = None,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Encode every meter's block, then each block again when its meter's values change, one
    meter per scheduler turn so that requests are answered in between; from the first full
    image on, requests read the image only (``RegisterMap.published``). With ``demand``, only
    while the image is wanted (``modbus_demand``): in between the image follows nothing and a
    request encodes what it asks for, until the image is complete again."""
    if demand is None:
        await _keep_image(register_map, source, task_status=task_status)
        return
    task_status.started()
    while True:
        await demand.wait(True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keep_image, register_map, source)
            await demand.wait(False)
            nursery.cancel_scope.cancel()
        register_map.published = False


async def _keep_image(
    register_map: RegisterMap, source: ModbusSource, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    version = source.version
    for _ in register_map.prepare():
        await trio.lowlevel.checkpoint()
    register_map.published = True
    register_map.prepare_device()
    task_status.started()
    while True:
        version, keys = await source.wait_changed(version)
        for _ in register_map.prepare(keys):
            await trio.lowlevel.checkpoint()
        register_map.prepare_device()


class ModbusService:
    """The supervised service. Settings and source are read at every (re)start, so a settings
    change takes effect through ``Supervisor.restart(["modbus"])``."""

    name = "modbus"

    def __init__(
        self,
        settings: Callable[[], ModbusSettings],
        source: Callable[[], ModbusSource],
        clock: WallClock,
        open_serial: SerialOpener = open_serial_port,
    ) -> None:
        self._settings = settings
        self._source = source
        self._clock = clock
        self._open_serial = open_serial
        self.server: TcpServer | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the TCP server listens (the real port when the setting is 0)."""
        return self.server.address if self.server is not None else None

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
        from mbusgw.gateway.services.modbus_pdu import ModbusStats, Responder
        from mbusgw.gateway.services.modbus_tcp import TcpServer

        source = self._source()
        register_map = RegisterMap(MapConfig(settings), source, self._clock)
        stats = ModbusStats()
        responder = Responder(register_map, stats)
        demand = ImageDemand()
        server = TcpServer(
            responder, stats, settings.max_connections, settings.idle_timeout_s, demand
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(source.follow)
            await nursery.start(keep_image, register_map, source, demand)
            host, port = await nursery.start(server.serve, settings.host, settings.port)
            logger.info("Modbus TCP server listening on %s:%d", host, port)
            if settings.rtu_device:
                await nursery.start(self._serve_rtu, responder, settings, demand)
            self.server = server
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self.server = None

    async def _serve_rtu(
        self,
        responder: Responder,
        settings: ModbusSettings,
        demand: ImageDemand,
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The serial port, opened again after it fails (a USB adapter unplugged and back),
        with a doubling wait; TCP goes on meanwhile. Started once the first attempt to open
        it is over, so that the service serves RTU when it says it is started. A serial
        master may ask at any time: the image is wanted for as long as RTU is set."""
        from mbusgw.gateway.services.modbus_rtu import serve_rtu

        device, wait = settings.rtu_device, RTU_RETRY_S
        with demand.held():
            while True:
                stream = None
                try:
                    stream = await self._open_serial(device, settings.rtu_baud_rate)
                except OSError as error:
                    logger.warning("Modbus RTU port %s cannot be opened: %s", device, error)
                task_status.started()
                task_status = trio.TASK_STATUS_IGNORED
                if stream is not None:
                    try:
                        await serve_rtu(responder, settings, stream)
                    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
                        logger.warning("Modbus RTU port %s failed: %s", device, error)
                        wait = RTU_RETRY_S
                await trio.sleep(wait)
                wait = min(2 * wait, RTU_RETRY_MAX_S)


def choose_source(continuous: bool, live: ModbusSource, stored: ModbusSource) -> ModbusSource:
    """Continuous read mode serves the snapshot; otherwise the latest stored values."""
    return live if continuous else stored


def modbus_service(gateway: GatewayHandle) -> ModbusService:
    """The service over a running gateway; the source is chosen at every start (a change of
    the reading settings restarts the service)."""

    def meters() -> list[Meter]:
        return gateway.meters  # asked each time: changes replace the list

    def source() -> ModbusSource:
        live = LiveSnapshotSource(gateway.live, meters, gateway.clock, events=gateway.events)
        stored = StoredValuesSource(gateway.store, meters, gateway.clock, gateway.events)
        return choose_source(gateway.settings.reading.continuous, live, stored)

    return ModbusService(lambda: gateway.settings.modbus, source, gateway.clock)
