"""Fixtures for the bus tests.

Rules for this folder (after trio-websocket's): a test that waits uses the ``autojump_clock``
fixture, so timeouts of hundreds of milliseconds take microseconds and are exact; every test that
does real I/O (pty, TCP, subprocess) runs on the real clock under ``trio.fail_after``. Timing
*rules* are asserted on the mock clock only; speeds are measured in ``bench/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio

from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.bustiming import Timing
from mbusgw.gateway.simulator import SimLine, SimMeter
from mbusgw.gateway.simulator.serve import socket_pair
from mbusgw.gateway.transport import StreamTransport

SimBus = Callable[..., AbstractAsyncContextManager[tuple[BusMaster, SimLine]]]


@pytest.fixture
def sim_bus() -> SimBus:
    """``async with sim_bus(meters, baud, timing=…, echo=…) as (bus, line)``: a bus master on a
    simulated line joined by a socket pair."""

    @asynccontextmanager
    async def open_bus(
        meters: list[SimMeter],
        baud: int = 2400,
        *,
        timing: Timing | None = None,
        **line_options: object,
    ) -> AsyncIterator[tuple[BusMaster, SimLine]]:
        line = SimLine(meters, baud, **line_options)
        master_end, line_end = socket_pair()
        bus = BusMaster(StreamTransport(master_end, baud, name="memory"), timing=timing)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(line.serve, line_end)
            await nursery.start(bus.run)
            yield bus, line
            nursery.cancel_scope.cancel()

    return open_bus
