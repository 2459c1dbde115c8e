"""Modbus RTU on a serial slave port, over two pseudo-terminals joined back to back: the
service opens one as its port (the real serial opener), pymodbus's serial client (the PLC)
opens the other.

Rules of this file: every test runs under ``trio.fail_after``; no timing assertions.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import AsyncIterator

import pytest
import trio
from modbus_rig import ENERGY, VOLUME, Rig, meter
from pymodbus.client import ModbusSerialClient
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from mbusgw.gateway.settings import ConfigError, Settings

RTU = FramerRTU(DecodePDU(is_server=False))


async def _pump(source: trio.lowlevel.FdStream, sink: trio.lowlevel.FdStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        while data := await source.receive_some(4096):
            await sink.send_all(data)


@contextlib.asynccontextmanager
async def pseudo_terminal() -> AsyncIterator[tuple[str, trio.lowlevel.FdStream]]:
    """A pseudo-terminal: the path of its port side, and its other end as a stream."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    end = trio.lowlevel.FdStream(master)
    try:
        yield path, end
    finally:
        os.close(slave)
        await end.aclose()


@contextlib.asynccontextmanager
async def serial_cable() -> AsyncIterator[tuple[str, str]]:
    """Two pseudo-terminals joined back to back: (the gateway's port, the PLC's port)."""
    async with (
        pseudo_terminal() as (gateway_port, gateway_end),
        pseudo_terminal() as (plc_port, plc_end),
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_pump, gateway_end, plc_end)
        nursery.start_soon(_pump, plc_end, gateway_end)
        yield gateway_port, plc_port
        nursery.cancel_scope.cancel()


def rtu_settings(device: str, **modbus):
    changes = {"host": "127.0.0.1", "port": 0, "rtu_device": device, "rtu_baud_rate": 38400}
    return Settings().updated({"modbus": {**changes, **modbus}}).modbus


async def test_a_plc_reads_the_map_over_rtu_as_over_tcp() -> None:
    with trio.fail_after(20):
        async with serial_cable() as (gateway_port, plc_port):
            settings = rtu_settings(gateway_port, meters={"00000002": {"unit_id": 7}})
            rig = Rig([meter("00000001"), meter("00000002")], settings)
            rig.reading("00000001", [ENERGY, VOLUME])
            rig.reading("00000002", [VOLUME])
            async with rig.serving() as (service, _):

                def plc() -> list:
                    # parity "N": a pseudo-terminal carries no parity bit, and some kernels
                    # refuse to set one on it (the gateway's opener works around that)
                    client = ModbusSerialClient(
                        plc_port, baudrate=38400, parity="N", timeout=2, retries=0
                    )
                    assert client.connect()
                    try:
                        return [
                            client.read_holding_registers(125, count=125, device_id=1),
                            client.read_input_registers(0, count=24, device_id=1),
                            client.read_holding_registers(0, count=40, device_id=7),
                            client.read_holding_registers(375, count=1, device_id=1),
                            client.write_register(0, 5, device_id=1),
                        ]
                    finally:
                        client.close()

                block, device, own, beyond, write = await trio.to_thread.run_sync(plc)
                assert block.registers == rig.block(1)
                assert device.registers[:13] == rig.map.read(1, 0, 13)[:13]  # then the clock
                assert own.registers == rig.map.read(7, 0, 40) == rig.block(2)[:40]
                assert beyond.isError() and beyond.exception_code == 2
                assert write.isError() and write.exception_code == 1
                assert service.stats is not None and service.stats.requests == 5


async def test_frames_for_other_slaves_broadcasts_and_garbage_get_no_answer() -> None:
    with trio.fail_after(20):
        async with pseudo_terminal() as (gateway_port, plc_end):
            rig = Rig([meter("00000001")], rtu_settings(gateway_port))
            async with rig.serving() as (service, _):

                def frame(unit: int, address: int, count: int) -> bytes:
                    return RTU.encode(struct.pack(">BHH", 3, address, count), unit, 0)

                good = frame(1, 0, 1)
                bad_crc = good[:-1] + bytes((good[-1] ^ 0xFF,))
                # another slave's request, a broadcast, a bad CRC and noise, each followed by
                # a silence as on a real bus; then the gateway's own request
                for noise in (frame(9, 0, 1), frame(0, 0, 1), bad_crc, b"\x01\x03\x00"):
                    await plc_end.send_all(noise)
                    await trio.sleep(0.2)
                await plc_end.send_all(good)
                answer = b""
                while len(answer) < 7:
                    answer += await plc_end.receive_some(64)
                # the first bytes back are the answer to the last request: the rest got none
                _, unit, _, pdu = RTU.decode(answer)
                assert (unit, pdu) == (1, b"\x03\x02\x00\x02")  # layout version 2
                assert service.stats is not None
                assert (service.stats.requests, service.stats.rtu_frames_ignored) == (1, 4)


async def test_a_port_that_cannot_be_opened_leaves_tcp_serving(caplog) -> None:
    rig = Rig([meter("00000001")], rtu_settings("/dev/no-such-modbus-port"))
    with trio.fail_after(10):
        async with rig.serving() as (_, port):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 1))
            answer = b""
            while len(answer) < 11:
                answer += await stream.receive_some(64)
            await stream.aclose()
    assert answer[7:] == b"\x03\x02\x00\x02"  # the layout version, over TCP
    assert "Modbus RTU port /dev/no-such-modbus-port cannot be opened" in caplog.text


def test_rtu_settings_refuse_what_no_serial_port_takes() -> None:
    for changes, path in (
        ({"rtu_baud_rate": 115200}, "modbus.rtu_baud_rate"),
        ({"rtu_baud_rate": 2000}, "modbus.rtu_baud_rate"),
        ({"rtu_device": "COM3"}, "modbus.rtu_device"),
    ):
        with pytest.raises(ConfigError) as refused:
            Settings().updated({"modbus": changes})
        assert path in refused.value.errors
    assert Settings().updated({"modbus": {"rtu_baud_rate": 9600}}).modbus.rtu_baud_rate == 9600
