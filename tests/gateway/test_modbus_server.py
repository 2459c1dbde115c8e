"""The Modbus TCP service over loopback: pymodbus's client reads every data type, and bad input
(beyond the map, too many registers, unknown functions and unit ids, garbage, floods, too many
or idle connections) is answered per the settings without disturbing other clients.

Rules of this file: every test that does I/O runs under ``trio.fail_after``; loops are bounded;
only 127.0.0.1. The pymodbus client is synchronous and runs in a worker thread, like a separate
client program.
"""

from __future__ import annotations

import contextlib
import struct

import pytest
import trio
from modbus_rig import DATE, ENERGY, FLOW_TEMP, IDENTITY, VOLUME, Rig, meter
from pymodbus.client import ModbusTcpClient

from mbusgw.gateway.modbus_encoding import DataType, Number
from mbusgw.gateway.services.modbus_map import HEADER_SIZE, LAYOUT_VERSION, SLOT_SIZE
from mbusgw.gateway.services.modbus_source import SeriesValue
from mbusgw.gateway.settings import ModbusSettings, Settings
from mbusgw.gateway.supervisor import Backoff, Supervisor

HOST = "127.0.0.1"

# the answer to reading register 0 (the layout version): function 3, two bytes
LAYOUT_ANSWER = b"\x03\x02" + LAYOUT_VERSION.to_bytes(2, "big")


def settings(**modbus) -> ModbusSettings:
    return Settings().updated({"modbus": {"host": HOST, "port": 0, **modbus}}).modbus


async def with_client(port: int, work):
    """Run ``work(client)`` with a connected synchronous pymodbus client in a thread."""

    def run():
        client = ModbusTcpClient(HOST, port=port, timeout=2, retries=0)
        assert client.connect()
        try:
            return work(client)
        finally:
            client.close()

    return await trio.to_thread.run_sync(run)


def request(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def read_pdu(function: int, address: int, count: int) -> bytes:
    return struct.pack(">BHH", function, address, count)


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def exchange(stream: trio.SocketStream, frame: bytes) -> tuple[int, int, bytes]:
    """Send one request frame; returns (transaction id, unit id, response PDU)."""
    await stream.send_all(frame)
    head = await receive_exactly(stream, 7)
    assert len(head) == 7, "the server closed the connection"
    tid, protocol, length, unit = struct.unpack(">HHHB", head)
    assert protocol == 0
    return tid, unit, await receive_exactly(stream, length - 1)


async def closed_by_server(stream: trio.SocketStream) -> bool:
    try:
        return await stream.receive_some(100) == b""
    except trio.BrokenResourceError:
        return True  # reset instead of a clean close


# ------------------------------------------------------------------ every data type

ALL_TYPES = [
    ("int16", "1", Number(-12345), -12345),
    ("uint16", "10", Number(65432, -1), 65432),
    ("int32", "1000", Number(-1234567, -3), -1234567),
    ("uint32", "1", Number(4_000_000_000), 4_000_000_000),
    ("int64", "1000", Number(-9_000_000_000_123, -3), -9_000_000_000_123),
    ("uint64", "1", Number(18_000_000_000_000_000_000), 18_000_000_000_000_000_000),
    ("float32", "1", Number(12345, -3), pytest.approx(12.345, rel=1e-7)),
    ("float64", "0.001", Number(1234567891, 0), 1234567.891),
]


@pytest.mark.parametrize("order", ["big", "little"])
async def test_every_data_type_through_pymodbus(order: str) -> None:
    series = {
        f"0{i}13": {"data_type": t, "constant": c} for i, (t, c, _, _) in enumerate(ALL_TYPES)
    }
    rig = Rig(
        [meter("00000001"), meter("00000002")],
        settings(word_order=order, meters={"00000002": {"series": series, "unit_id": 7}}),
    )
    values = [
        SeriesValue(bytes((i, 0x13)), number) for i, (_, _, number, _) in enumerate(ALL_TYPES)
    ]
    rig.reading("00000002", values)

    def read_all(client: ModbusTcpClient):
        holding = client.read_holding_registers(250, count=125, device_id=1)
        inputs = client.read_input_registers(250, count=125, device_id=1)
        own = client.read_holding_registers(0, count=HEADER_SIZE + 8 * SLOT_SIZE, device_id=7)
        assert not holding.isError() and not inputs.isError() and not own.isError()
        assert holding.registers == inputs.registers
        assert own.registers == holding.registers[: len(own.registers)]
        decoded = []
        for i, (label, _, _, _) in enumerate(ALL_TYPES):
            data_type = client.DATATYPE[label.upper()]
            start = HEADER_SIZE + i * SLOT_SIZE
            words = holding.registers[start : start + data_type.value[1]]
            decoded.append(client.convert_from_registers(words, data_type, word_order=order))
        state, count = holding.registers[0:2]
        ident = client.convert_from_registers(
            holding.registers[8:10], client.DATATYPE.UINT32, word_order=order
        )
        return decoded, state, count, ident

    with trio.fail_after(10):
        async with rig.serving() as (_, port):
            decoded, state, count, ident = await with_client(port, read_all)
    assert decoded == [expected for _, _, _, expected in ALL_TYPES]
    assert (state, count, ident) == (0, len(ALL_TYPES), IDENTITY.id)
    assert DataType.from_label("float64").registers == 4


# ------------------------------------------------------------------ bad requests


@pytest.mark.parametrize("mode", ["exception", "zero_fill"])
async def test_bad_requests_are_answered_per_the_settings(mode: str) -> None:
    rig = Rig([meter("00000001")], settings(invalid_addresses=mode))
    rig.reading("00000001", [ENERGY, VOLUME])
    zero_fill = mode == "zero_fill"
    with trio.fail_after(10):
        async with rig.serving() as (service, port):
            stream = await trio.open_tcp_stream(HOST, port)
            # beyond the map: meter 2 does not exist
            _, _, pdu = await exchange(stream, request(1, 1, read_pdu(3, 250, 10)))
            assert pdu == (b"\x03\x14" + bytes(20) if zero_fill else b"\x83\x02")
            # past the 16-bit address space, too many and too few registers
            for tid, (address, count, expected) in enumerate(
                [(65530, 10, b"\x83\x02"), (0, 126, b"\x83\x03"), (0, 0, b"\x83\x03")], start=2
            ):
                got_tid, unit, pdu = await exchange(
                    stream, request(tid, 1, read_pdu(3, address, count))
                )
                assert (got_tid, unit, pdu) == (tid, 1, expected)
            # a read PDU of the wrong length
            _, _, pdu = await exchange(stream, request(5, 1, b"\x04\x00\x00"))
            assert pdu == b"\x84\x03"
            # writes, coils and unknown functions are not served: illegal function
            for function, body in [(6, b"\x00\x00\x00\x05"), (1, b"\x00\x00\x00\x01"), (0x63, b"")]:
                _, _, pdu = await exchange(stream, request(6, 1, bytes((function,)) + body))
                assert pdu == bytes((function | 0x80, 1))
            # an unknown unit id: gateway path unavailable
            _, unit, pdu = await exchange(stream, request(7, 42, read_pdu(3, 0, 1)))
            assert (unit, pdu) == (42, b"\x83\x0a")
            # the same connection still reads good registers
            _, _, pdu = await exchange(stream, request(8, 1, read_pdu(4, 125, 2)))
            assert pdu == b"\x04\x04\x00\x00\x00\x02"  # state ok, two values
            await stream.aclose()
    assert service.server is None
    assert rig.map.read(1, 0, 1) != []


async def test_pipelined_and_split_requests() -> None:
    rig = Rig([meter("00000001")])
    rig.reading("00000001", [ENERGY])
    with trio.fail_after(10):
        async with rig.serving() as (_, port):
            stream = await trio.open_tcp_stream(HOST, port)
            frames = b"".join(request(t, 1, read_pdu(3, 126, 1)) for t in range(1, 41))
            await stream.send_all(frames)
            answers = await receive_exactly(stream, 40 * 11)
            tids = [struct.unpack_from(">H", answers, i * 11)[0] for i in range(40)]
            assert tids == list(range(1, 41))
            assert all(answers[i * 11 + 7 : i * 11 + 11] == b"\x03\x02\x00\x01" for i in range(40))
            # a request that arrives one byte at a time
            frame = request(99, 1, read_pdu(3, 126, 1))
            for i in range(len(frame)):
                await stream.send_all(frame[i : i + 1])
                await trio.sleep(0.001)
            assert await receive_exactly(stream, 11) == frame[:4] + b"\x00\x05\x01\x03\x02\x00\x01"
            await stream.aclose()


async def test_garbage_closes_only_that_connection() -> None:
    rig = Rig([meter("00000001")])
    with trio.fail_after(10):
        async with rig.serving() as (service, port):
            good = await trio.open_tcp_stream(HOST, port)
            for garbage in [
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"\x00\x01\x00\x00\xff\xff\x01\x03",
            ]:
                bad = await trio.open_tcp_stream(HOST, port)
                await bad.send_all(garbage)
                assert await closed_by_server(bad)
                await bad.aclose()
            _, _, pdu = await exchange(good, request(1, 1, read_pdu(3, 0, 1)))
            assert pdu == LAYOUT_ANSWER
            await good.aclose()
            assert service.stats.closed_bad_frame == 2


async def test_connection_limit_refuses_the_next_cleanly() -> None:
    rig = Rig([meter("00000001")], settings(max_connections=2))
    with trio.fail_after(10):
        async with rig.serving() as (service, port):
            first = await trio.open_tcp_stream(HOST, port)
            second = await trio.open_tcp_stream(HOST, port)
            for stream in (first, second):
                await exchange(stream, request(1, 1, read_pdu(3, 0, 1)))
            third = await trio.open_tcp_stream(HOST, port)
            assert await closed_by_server(third)
            await first.aclose()
            while service.stats.connections > 1:  # the server notices the close
                await trio.sleep(0.01)
            fourth = await trio.open_tcp_stream(HOST, port)
            _, _, pdu = await exchange(fourth, request(2, 1, read_pdu(3, 0, 1)))
            assert pdu == LAYOUT_ANSWER
            await exchange(second, request(3, 1, read_pdu(3, 0, 1)))
            stats = service.stats
            assert (stats.accepted, stats.refused, stats.connections) == (3, 1, 2)
            for stream in (second, third, fourth):
                await stream.aclose()


async def test_idle_connections_are_closed() -> None:
    rig = Rig([meter("00000001")], settings(idle_timeout_s=1))
    with trio.fail_after(10):
        async with rig.serving() as (service, port):
            idle = await trio.open_tcp_stream(HOST, port)
            await idle.send_all(request(1, 1, read_pdu(3, 0, 1))[:5])  # never completed
            assert await closed_by_server(idle)
            assert service.stats.closed_idle == 1
            await idle.aclose()


async def test_a_flooding_client_does_not_stall_the_others() -> None:
    rig = Rig([meter("00000001")], settings(max_connections=4))
    rig.reading("00000001", [ENERGY, VOLUME, FLOW_TEMP, DATE])
    flood = b"".join(request(t & 0xFFFF, 1, read_pdu(3, 125, 125)) for t in range(30_000))
    with trio.fail_after(30):
        async with rig.serving() as (service, port):
            flooder = await trio.open_tcp_stream(HOST, port)

            async def send_flood() -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    await flooder.send_all(flood)  # 360 kB of requests, answers never read

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_flood)
                polite = await trio.open_tcp_stream(HOST, port)
                for tid in range(200):
                    _, _, pdu = await exchange(polite, request(tid, 1, read_pdu(3, 125, 125)))
                    assert pdu[:2] == b"\x03\xfa"
                await polite.aclose()
                nursery.cancel_scope.cancel()
            # the flooder was held back: far fewer of its requests answered than it sent
            assert service.stats.requests < 30_000
            await flooder.aclose()


# ------------------------------------------------------------------ life cycle


async def test_settings_change_restarts_with_the_new_settings() -> None:
    rig = Rig([meter("00000001")], settings(word_order="big"))
    rig.reading("00000001", [VOLUME])
    service = rig.service()
    log: list[tuple[int, str, str]] = []
    supervisor = Supervisor(lambda *line: log.append(line), backoff=Backoff(initial=0.05))

    def probe(client: ModbusTcpClient) -> list[int]:
        return client.read_holding_registers(125 + HEADER_SIZE, count=2, device_id=1).registers

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run, [service])
            old = service.address
            before = await with_client(old[1], probe)
            rig.settings = settings(word_order="little")
            assert supervisor.restart(["modbus"]) == []
            while service.address is None or service.address == old:
                await trio.sleep(0.01)
            after = await with_client(service.address[1], probe)
            nursery.cancel_scope.cancel()
    assert after == before[::-1]
    assert any("restarted after a settings change" in text for _, _, text in log)


async def test_a_port_in_use_is_logged_and_retried() -> None:
    blocker = trio.socket.socket()
    await blocker.bind((HOST, 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    rig = Rig([meter("00000001")], settings(port=port))
    service = rig.service()
    log: list[tuple[int, str, str]] = []
    supervisor = Supervisor(lambda *line: log.append(line), backoff=Backoff(initial=0.05))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run, [service])
            assert service.address is None
            assert any("service crashed: OSError" in text for _, _, text in log)
            blocker.close()
            while service.address is None:
                await trio.sleep(0.01)
            registers = await with_client(
                port, lambda c: c.read_holding_registers(0, count=1, device_id=1).registers
            )
            nursery.cancel_scope.cancel()
    assert registers == [LAYOUT_VERSION]


async def test_a_disabled_service_opens_no_port() -> None:
    rig = Rig([meter("00000001")], settings(enabled=False))
    service = rig.service()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            assert service.address is None
            nursery.cancel_scope.cancel()
