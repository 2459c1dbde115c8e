"""Slave serial ports over pseudo-terminals: the gateway opens one end of a pty pair, a master
that is not the gateway's code opens the other (pyMeterBus reading the virtual M-Bus, our
``mbusgw read`` going through a transparent port to a simulated line)."""

from __future__ import annotations

import json
import os
import pty
import tty
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio
from gatewaykit import kept, seed_settings
from test_transparent import BAUD, RELAY_LATENCY, mbusgw, shape
from test_vmbus import numbers, pymeterbus_read_port, same_numbers, secondary_address

from mbusgw.core import decode
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.services.slave_port import SlavePortService, slave_port_1, slave_port_2
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig


async def _copy(source: trio.lowlevel.FdStream, target: trio.lowlevel.FdStream) -> None:
    while data := await source.receive_some(4096):
        await target.send_all(data)


@asynccontextmanager
async def pty_pair() -> AsyncIterator[tuple[str, str]]:
    """Two serial devices wired to each other (a null-modem cable between two ptys)."""
    ends = [pty.openpty() for _ in range(2)]
    for _, device in ends:
        tty.setraw(device)  # our descriptors keep the devices alive while others reopen them
    streams = [trio.lowlevel.FdStream(controller) for controller, _ in ends]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_copy, streams[0], streams[1])
            nursery.start_soon(_copy, streams[1], streams[0])
            yield os.ttyname(ends[0][1]), os.ttyname(ends[1][1])
            nursery.cancel_scope.cancel()
    finally:
        for stream in streams:
            await stream.aclose()
        for _, device in ends:
            os.close(device)


async def test_virtual_and_transparent_mbus_on_two_slave_ports(tmp_path: Path) -> None:
    made: list[SlavePortService] = []

    with trio.fail_after(60):
        async with pty_pair() as (gateway_1, master_1), pty_pair() as (gateway_2, master_2):
            port = {"enabled": True, "baud": BAUD, "packing_interval_ms": 5}
            seed_settings(
                tmp_path,
                {
                    "reading": {"schedule": "0 0 1 1 *", "read_at_start": False},
                    "modbus": {"enabled": False},
                    "slave": {
                        "port_1": {**port, "device": gateway_1, "serves": "virtual"},
                        "port_2": {**port, "device": gateway_2, "serves": "transparent"},
                    },
                },
            )
            line = InterfaceConfig(name="a", kind="simulator", baud=BAUD, meters=3)
            startup = StartupConfig(tmp_path, interfaces=(line,))
            gateway = Gateway(
                startup, northbound=[kept(made, slave_port_1), kept(made, slave_port_2)]
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(gateway.run)
                assert not (await gateway.read_all()).failed
                book = made[0].book
                while not all(m.frames for m in book.directory.meters.values()):
                    await trio.sleep(0.05)
                for meter in gateway.meters:
                    served = book.directory.meters[meter.key]
                    address = secondary_address(served.identity)
                    got = await trio.to_thread.run_sync(pymeterbus_read_port, master_1, address)
                    stored = gateway.store.latest([meter.key]).values()
                    assert same_numbers(numbers(got), numbers(stored))

                    assert meter.primary_address is not None
                    args = ("read", "--port", master_2, "--address", str(meter.primary_address))
                    args += ("--baud", str(BAUD), "--json", *RELAY_LATENCY)
                    done = await trio.to_thread.run_sync(partial(mbusgw, *args))
                    assert done.returncode == 0, done.stderr
                    direct = [decode(frame).to_dict() for frame in served.frames]
                    through = json.loads(done.stdout)["telegrams"]
                    assert [shape(t) for t in through] == [shape(t) for t in direct]
                assert made[0].counters.sessions >= 1 and made[1].counters.frames_in > 0
                gateway.stop()
