"""The configured M-Bus lines: a bus master per interface, and built-in simulated lines.

A simulated line is served as an M-Bus/TCP converter on a loopback port and read through the
same TCP transport as a real converter, so the embedded default exercises the real code path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import trio

from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.busjobs import Prepare, read_in_trio
from mbusgw.gateway.busrequests import MeterAddress, ReadSettings
from mbusgw.gateway.busthread import ThreadedBusMaster
from mbusgw.gateway.bustiming import Timing
from mbusgw.gateway.meters import AddressingMode, Meter
from mbusgw.gateway.replies import ReadReply
from mbusgw.gateway.settings import InterfaceConfig, MBusSettings
from mbusgw.gateway.simulator import SimLine
from mbusgw.gateway.simulator.population import default_meters
from mbusgw.gateway.simulator.serve import serve_tcp
from mbusgw.gateway.transport import ReconnectingLine, serial_line, tcp_line

LOOPBACK = "127.0.0.1"


class SimulatorService:
    """Serves a simulated line on a loopback TCP port; keeps the port across restarts."""

    def __init__(self, line: SimLine) -> None:
        self.line = line
        self.name = f"simulator:{line.name}"
        self.port = 0
        self.ready = trio.Event()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.port = await nursery.start(serve_tcp, self.line, LOOPBACK, self.port)
            self.ready.set()
            task_status.started()


class BusLine:
    """One interface: its bus master (the service that owns the line) and how to read a meter
    on it with the current M-Bus settings."""

    def __init__(
        self, config: InterfaceConfig, transport: ReconnectingLine, driver: str = "trio"
    ) -> None:
        self.config = config
        self.name = config.name
        self.transport = transport
        master = ThreadedBusMaster if driver == "threads" else BusMaster
        self.master = master(transport, name=config.name)
        self.mbus = MBusSettings()
        self.busy_s = 0.0  # time spent reading meters, failed reads too (occupancy)
        self._plans: dict[str, tuple[Meter, MBusSettings, MeterAddress, ReadSettings]] = {}

    async def read_meter(self, meter: Meter, *, continuous: bool = False) -> ReadReply:
        """``continuous``: read back to back, so the meter's link state from its previous
        read is fresh (no SND_NKE while it is known)."""
        address, settings = self._read_plan(meter)
        with self._busy():
            return await self.master.read(address, settings, keep_link=continuous)

    async def read_round(
        self,
        meters: Sequence[Meter],
        on_reply: Callable[[int, Any], None],
        *,
        continuous: bool = False,
        prepare: Prepare | None = None,
    ) -> None:
        """The meters one after the other in one request to the master; ``on_reply(k, reply)``
        as each is read (with ``prepare``: ``on_reply(k, prepared)``, ``prepare`` running
        where the meter was read, as ``BusMaster.read_round`` says). A meter that cannot be
        planned (a bad address) fails alone."""
        plan: list[tuple[MeterAddress, ReadSettings]] = []
        index: list[int] = []  # plan position → position in ``meters``
        for k, meter in enumerate(meters):
            try:
                plan.append(self._read_plan(meter))
            except Exception as exc:  # that meter's outcome
                read_in_trio(on_reply, prepare, k, exc)
            else:
                index.append(k)
        if len(index) < len(meters):  # the plan's positions are not the meters'
            on_reply, prepare = _renumbered(index, on_reply, prepare)
        with self._busy():
            await self.master.read_round(plan, on_reply, keep_link=continuous, prepare=prepare)

    @contextmanager
    def _busy(self) -> Iterator[None]:
        """Counts the time spent reading in ``busy_s``, failed reads too."""
        started = trio.current_time()
        try:
            yield
        finally:
            self.busy_s += trio.current_time() - started

    def _read_plan(self, meter: Meter) -> tuple[MeterAddress, ReadSettings]:
        """How to read ``meter``; kept until the meter or the M-Bus settings are replaced
        (both are immutable), so a read does not rebuild it."""
        cached = self._plans.get(meter.key)
        if cached is not None and cached[0] is meter and cached[1] is self.mbus:
            return cached[2], cached[3]
        settings = ReadSettings(
            modes=meter.addressing,
            multi_telegram=meter.multi_telegram,
            telegram_limit=meter.multi_telegram_limit,
            baud=None if meter.baud == self.transport.baudrate else meter.baud,
            timing=Timing.from_settings(self.mbus.timing, meter.timing),
            follow_up=Timing.from_settings(self.mbus.multi_telegram_timing, meter.timing),
        )
        address = address_of(meter)
        self._plans[meter.key] = (meter, self.mbus, address, settings)
        return address, settings


def _renumbered(
    index: list[int], on_reply: Callable[[int, Any], None], prepare: Prepare | None
) -> tuple[Callable[[int, Any], None], Prepare | None]:
    """``on_reply`` and ``prepare`` called with ``index[j]`` for the j-th meter read."""

    def read(j: int, got: Any) -> None:
        on_reply(index[j], got)

    if prepare is None:
        return read, None
    meters_prepare = prepare

    def prepared(j: int, got: ReadReply | Exception) -> tuple[Any, bool | None]:
        return meters_prepare(index[j], got)

    return read, prepared


def address_of(meter: Meter) -> MeterAddress:
    """Everything the bus needs to reach ``meter`` in each of its addressing modes. The
    enhanced mode selects with the fabrication number as well (EnhancedAddress)."""
    enhanced = meter.enhanced_address
    wired_fabrication = (
        enhanced
        if AddressingMode.ESECONDARY in meter.addressing and enhanced and len(enhanced) == 8
        else None
    )
    return MeterAddress(
        primary=meter.primary_address,
        secondary=meter.secondary_address,
        fabrication=wired_fabrication,
    )


# How long a thread may keep the GIL while another waits for it. Python's 5 ms would let a busy
# thread (a report being rendered) hold up a line's next request that long after each answer;
# measured with the x112 report rendering and 32 Modbus clients, 0.5 ms keeps the lines at
# their quiet occupancy at no visible cost to the rendering.
GIL_SWITCH_INTERVAL = 0.0005


def open_line(
    config: InterfaceConfig, simulator: SimulatorService | None = None, driver: str = "auto"
) -> BusLine:
    """The line of ``config``, driven by ``driver`` (``MBusSettings.driver``)."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    if driver == "auto":
        driver = "trio" if config.kind == "simulator" else "threads"
    if config.kind == "serial":
        return BusLine(config, serial_line(config.device or "", config.baud), driver)
    if config.kind == "tcp":
        return BusLine(config, tcp_line(config.host or "", config.port or 0, config.baud), driver)
    if simulator is None:
        raise ValueError(f"interface {config.name}: a simulated line needs its simulator")

    async def connect_to_simulator(_baud: int) -> trio.abc.Stream:
        await simulator.ready.wait()
        return await trio.open_tcp_stream(LOOPBACK, simulator.port)

    transport = ReconnectingLine(
        connect_to_simulator, config.baud, name=f"simulated {config.name}", fixed_baud=True
    )
    return BusLine(config, transport, driver)


def simulated_line(config: InterfaceConfig, seed: int) -> SimLine:
    return SimLine(default_meters(config.meters, seed=seed), config.baud, name=config.name)


def meters_on(line: SimLine) -> list[Meter]:
    """The simulated meters as an installer would enter them: by secondary address with the
    primary address as fallback."""
    return [
        Meter(
            key=sim.identity.id,
            position=f"{sim.template.name} {sim.identity.id}",
            secondary_address=sim.identity.id,
            baud=line.baud,
            addressing=(AddressingMode.SECONDARY, AddressingMode.PRIMARY),
            primary_address=sim.primary,
            interface=line.name,
            manufacturer=sim.identity.manufacturer,
            version=sim.identity.version,
            medium=sim.identity.medium,
        )
        for sim in line.meters
    ]


def open_wired_lines(
    interfaces: Sequence[InterfaceConfig], mbus: MBusSettings
) -> tuple[dict[str, SimulatorService], dict[str, BusLine]]:
    """The wired lines of ``interfaces`` (receivers are left out), each simulated line with
    its simulator; simulators are seeded by the interface's position."""
    simulators: dict[str, SimulatorService] = {}
    lines: dict[str, BusLine] = {}
    for index, config in enumerate(interfaces):
        if config.wireless:
            continue
        simulator = None
        if config.kind == "simulator":
            simulator = SimulatorService(simulated_line(config, seed=index + 1))
            simulators[config.name] = simulator
        line = open_line(config, simulator, mbus.driver)
        line.mbus = mbus
        lines[config.name] = line
    return simulators, lines


class BusService:
    """The bus master of one line as a supervised service."""

    def __init__(self, line: BusLine) -> None:
        self.line = line
        self.name = f"bus:{line.name}"

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.line.master.run(task_status=task_status)
