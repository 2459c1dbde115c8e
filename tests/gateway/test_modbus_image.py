"""The register image: a new reading is encoded off the request path, one meter's block (and the
device block) at a time, for the live and the stored source; requests over real TCP only copy
the image.

Rules of this file: every test that does I/O runs under ``trio.fail_after``; loops are bounded.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from datetime import timedelta

import pytest
import trio
from modbus_rig import DATE, ENERGY, FLOW_TEMP, T0, VOLUME, Rig, meter

from mbusgw.gateway.modbus_encoding import ONE, DataType, Number, encode
from mbusgw.gateway.services import modbus_map
from mbusgw.gateway.services.modbus import ModbusService, keep_image
from mbusgw.gateway.services.modbus_map import BLOCK_SIZE, MapConfig, RegisterMap
from mbusgw.gateway.services.modbus_source import LiveSnapshotSource, MeterValues
from mbusgw.gateway.settings import ModbusMeterSettings, ModbusSettings

HOST = "127.0.0.1"


class Spy:
    """Which tasks encode a block or ask the source for values."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tasks: list[str] = []
        for cls, name in ((RegisterMap, "encode_meter"), (LiveSnapshotSource, "values")):
            original = getattr(cls, name)
            monkeypatch.setattr(cls, name, self._wrap(original))

    def _wrap(self, original):
        def spied(*args, **kwargs):
            self.tasks.append(trio.lowlevel.current_task().name)
            return original(*args, **kwargs)

        return spied


async def read_block(stream: trio.SocketStream, tid: int, address: int) -> list[int]:
    await stream.send_all(struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, address, 125))
    data = b""
    while len(data) < 9 + 250:
        chunk = await stream.receive_some(4096)
        assert chunk, "the server closed the connection"
        data += chunk
    return list(struct.unpack(">125H", data[9:]))


async def test_a_new_reading_is_encoded_off_the_request_path(monkeypatch) -> None:
    rig = Rig([meter("00000001"), meter("00000002")])
    rig.reading("00000001", [ENERGY])
    rig.reading("00000002", [VOLUME])
    other = rig.block(2)
    spy = Spy(monkeypatch)
    with trio.fail_after(10):
        async with rig.serving() as (service, port):
            stream = await trio.open_tcp_stream(HOST, port)
            await image_complete(service)  # the client made it wanted
            for step in range(1, 11):
                values = [ENERGY, VOLUME][: 1 + step % 2]
                rig.reading("00000001", values, at=T0 + timedelta(seconds=step))
                for tid in range(1000):  # until the image has the reading
                    block = await read_block(stream, tid, 125)
                    if block[4] << 16 | block[5] == T0.timestamp() + step:  # read_at
                        break
                    await trio.sleep(0.001)
                assert block[1] == len(values)  # value_count
                assert await read_block(stream, 0, 250) == other
            await stream.aclose()
            assert service.stats is not None and service.stats.requests > 20
    assert spy.tasks, "nothing was encoded"
    assert all(name.endswith("keep_image") for name in spy.tasks), set(spy.tasks)


async def image_complete(service: ModbusService, complete: bool = True) -> None:
    assert service.server is not None
    register_map = service.server.responder.register_map
    for _ in range(10_000):
        if register_map.published == complete:
            return
        await trio.sleep(0.001)
    raise AssertionError(f"the image is {'not ' if complete else ''}complete after 10 s")


async def test_no_reading_is_encoded_while_no_client_can_ask(monkeypatch) -> None:
    """Without a connection the image follows nothing (a default install whose Modbus nobody
    reads does not pay for it); a client that connects gets the latest values with its first
    request, and the image is complete soon after."""
    rig = Rig([meter("00000001"), meter("00000002")])
    rig.reading("00000001", [ENERGY])
    rig.reading("00000002", [VOLUME])
    spy = Spy(monkeypatch)
    with trio.fail_after(10):
        async with rig.serving() as (service, port):
            for step in range(1, 4):
                rig.reading("00000001", [ENERGY, VOLUME], at=T0 + timedelta(seconds=step))
                await trio.sleep(0.01)
            assert spy.tasks == []
            stream = await trio.open_tcp_stream(HOST, port)
            block = await read_block(stream, 1, 125)
            assert block[4] << 16 | block[5] == T0.timestamp() + 3  # read_at: the latest
            assert block[1] == 2  # value_count
            await image_complete(service)
            await stream.aclose()
            await image_complete(service, False)  # the last client left
            spy.tasks.clear()
            rig.reading("00000001", [ENERGY], at=T0 + timedelta(seconds=4))
            await trio.sleep(0.05)
            assert spy.tasks == []
            stream = await trio.open_tcp_stream(HOST, port)
            block = await read_block(stream, 2, 125)
            assert block[4] << 16 | block[5] == T0.timestamp() + 4 and block[1] == 1
            await stream.aclose()


def test_the_device_block_of_an_incomplete_image_makes_no_meter_values(monkeypatch) -> None:
    """A client that connects first asks the device block: its meter counts take each meter's
    state, not its values (which would turn every meter's records into values first)."""
    rig = Rig([meter(f"{i:08d}") for i in range(1, 4)])
    rig.reading("00000001", [ENERGY])
    rig.reading("00000002", [VOLUME], ok=False)
    complete = RegisterMap(MapConfig(rig.settings), rig.source, rig.clock)
    list(complete.prepare())
    complete.published = True
    register_map = RegisterMap(MapConfig(rig.settings), rig.source, rig.clock)
    spy = Spy(monkeypatch)
    device = register_map.device_block(T0)
    assert spy.tasks == []
    assert device == complete.device_block(T0)  # counted from every meter's values


async def test_only_the_changed_meter_is_encoded_again() -> None:
    rig = Rig([meter(f"{i:08d}") for i in range(1, 6)])
    for i in range(1, 6):
        rig.reading(f"{i:08d}", [ENERGY])
    register_map = RegisterMap(MapConfig(rig.settings), rig.source, rig.clock)
    encoded: list[tuple[str, MeterValues]] = []
    original = register_map.encode_meter

    def counting(meter, index, values):
        encoded.append((meter.key, values))
        return original(meter, index, values)

    register_map.encode_meter = counting  # type: ignore[method-assign]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(keep_image, register_map, rig.source)
            assert [key for key, _ in encoded] == [f"{i:08d}" for i in range(1, 6)]
            device = register_map.read(1, 0, 9)
            rig.reading("00000003", [ENERGY, VOLUME], at=T0 + timedelta(seconds=5))
            while len(encoded) < 6:
                await trio.sleep(0.001)
            await trio.sleep(0.05)  # time for any further (wrong) encoding
            nursery.cancel_scope.cancel()
    assert [key for key, _ in encoded[5:]] == ["00000003"]
    assert register_map.read(1, 3 * 125 + 1, 1) == [2]  # its value count, from the image
    assert register_map.read(1, 0, 9) == device  # still five meters ok


@pytest.mark.parametrize("order", ["big", "little"])
def test_the_age_and_clock_written_per_request_match_the_encoder(order: str) -> None:
    rig = Rig([meter("00000001")])
    register_map = RegisterMap(MapConfig(rig.settings), rig.source, rig.clock)
    register_map.config.word_order = order
    for value in (0, 1, 65535, 65536, 0x12345678, 0xFFFFFFFE, 0xFFFFFFFF, 2**40, -5):
        expected = encode(Number(value), DataType.UINT32, ONE, order)
        assert register_map._uint32(value) == struct.pack(">HH", *expected), value


async def test_a_change_looks_at_the_changed_meters_only() -> None:
    """After the first image, a batch's refresh (the changed blocks and the device block) asks
    the settings about the changed meters only, not about every meter, and the device block's
    counts stay those of a map made afresh: through changes of state, a meter removed from the
    list and a meter added to it."""
    keys = [f"{i:08d}" for i in range(1, 41)]
    settings = ModbusSettings(
        host="127.0.0.1", port=0, meters={"00000002": ModbusMeterSettings(enabled=False)}
    )
    rig = Rig([meter(key, active=key != "00000004") for key in keys], settings)
    for key in keys[:30]:
        rig.reading(key, [ENERGY], ok=key != "00000005")
    register_map = RegisterMap(MapConfig(rig.settings), rig.source, rig.clock)
    asked: list[str] = []
    original = register_map.config.meter

    def counting(key: str):
        asked.append(key)
        return original(key)

    register_map.config.meter = counting  # type: ignore[method-assign]

    def device() -> list[int]:
        return register_map.read(1, 0, 9)

    def afresh() -> list[int]:
        return RegisterMap(MapConfig(rig.settings), rig.source, rig.clock).read(1, 0, 9)

    async def changed(count: int) -> None:
        while register_map.source.version < count:
            await trio.sleep(0.001)
        for _ in range(100):  # the keeper has caught up when the device block is made again
            await trio.sleep(0.001)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(keep_image, register_map, rig.source)
            assert device() == afresh()
            assert device()[5:9] == [27, 1, 10, 1]  # ok, failed, never, passive
            version = rig.source.version
            asked.clear()
            rig.reading("00000007", [ENERGY], ok=False, at=T0 + timedelta(seconds=1))
            rig.reading("00000035", [ENERGY, VOLUME], at=T0 + timedelta(seconds=1))
            await changed(version + 2)
            assert device() == afresh()
            assert device()[5:9] == [27, 2, 9, 1]
            assert 0 < len(asked) < 10, asked  # a handful per changed meter, not one per meter
            assert set(asked) <= {"00000007", "00000035"}
            rig.meters = [m for m in rig.meters if m.key != "00000007"]
            rig.meters.append(meter("00000099"))
            assert device() == afresh()
            rig.reading("00000099", [ENERGY], at=T0 + timedelta(seconds=2))
            await changed(version + 3)
            assert device() == afresh()
            assert device()[5:9] == [28, 1, 9, 1]
            nursery.cancel_scope.cancel()


def test_a_new_reading_encodes_only_the_values_that_changed(monkeypatch) -> None:
    """Values equal to those in the same slots of the meter's previous reading keep their
    registers; the block is still exactly the one a map made afresh encodes."""
    settings = ModbusSettings(
        host="127.0.0.1",
        port=0,
        meters={"00000001": ModbusMeterSettings(data_type="float32", constant="0.001")},
    )
    rig = Rig([meter("00000001"), meter("00000002")], settings)
    first = [ENERGY, VOLUME, FLOW_TEMP, DATE]
    rig.reading("00000001", first)
    rig.reading("00000002", first)
    encoded: list[Number | None] = []

    def counting(number, data_type, constant, order):
        encoded.append(number)
        return encode(number, data_type, constant, order)

    monkeypatch.setattr(modbus_map, "encode", counting)
    blocks = [rig.block(1), rig.block(2)]
    assert len(encoded) == 2 * (4 + 1)  # four values and the unused slot, per meter
    warmer = replace(FLOW_TEMP, number=Number(-51, -1))
    second = [replace(ENERGY), replace(VOLUME), warmer, replace(DATE)]  # equal, not the same
    for at, (values, changed) in enumerate(
        (
            (second, [warmer]),
            ([warmer, ENERGY, VOLUME, DATE], [warmer, ENERGY, VOLUME]),
            ([warmer, ENERGY], []),
        ),
        start=1,
    ):
        encoded.clear()
        rig.reading("00000001", values, at=T0 + timedelta(seconds=at))
        block = rig.block(1)
        assert encoded == [value.number for value in changed] + [None]  # and the unused slot
        fresh = RegisterMap(MapConfig(rig.settings), rig.source, rig.clock)
        assert block == fresh.read(1, BLOCK_SIZE, BLOCK_SIZE)
    assert rig.block(2) == blocks[1]
