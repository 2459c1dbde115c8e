"""The register image: a new reading is encoded off the request path, one meter's block (and the
device block) at a time, for the live and the stored source; requests over real TCP only copy
the image.

Rules of this file: every test that does I/O runs under ``trio.fail_after``; loops are bounded.
"""

from __future__ import annotations

import struct
from datetime import timedelta

import pytest
import trio
from modbus_rig import ENERGY, T0, VOLUME, Rig, meter

from mbusgw.gateway.modbus_encoding import ONE, DataType, Number, encode
from mbusgw.gateway.services.modbus import keep_image
from mbusgw.gateway.services.modbus_map import MapConfig, RegisterMap
from mbusgw.gateway.services.modbus_source import LiveSnapshotSource, MeterValues

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
