"""Shared set-up of the Modbus tests: meters, a snapshot with readings, the map and the service.

The decoded-telegram boundary is stood in for by ``read_values``: a "telegram" here is already
``(identity, values)``; the tests over real frames go through the decoder instead.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime

import trio

from mbusgw.gateway.live import LiveReading, LiveSnapshot
from mbusgw.gateway.meters import AddressingMode, Meter
from mbusgw.gateway.modbus_encoding import DataType, Number, decode_registers
from mbusgw.gateway.services.modbus import ModbusService
from mbusgw.gateway.services.modbus_map import (
    BLOCK_SIZE,
    HEADER_SIZE,
    SLOT_SIZE,
    MapConfig,
    RegisterMap,
)
from mbusgw.gateway.services.modbus_source import (
    LiveSnapshotSource,
    MeterIdentity,
    SeriesValue,
    ValueReader,
    manufacturer_code,
)
from mbusgw.gateway.settings import ModbusSettings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENERGY = SeriesValue(b"\x04\x06", Number(123456, 3), quantity=1, unit=1)  # 123 456 000 Wh
VOLUME = SeriesValue(b"\x04\x13", Number(1234567, -3), quantity=2, unit=3)  # 1234.567 m³
FLOW_TEMP = SeriesValue(b"\x02\x5a", Number(-52, -1), quantity=9, unit=15)  # -5.2 °C
DATE = SeriesValue(b"\x04\x6d", Number(1_767_225_600), scalable=False, quantity=14)
IDENTITY = MeterIdentity(12345678, manufacturer_code("ELV"), 7, 4, 42, 0)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


def meter(key: str, **changes) -> Meter:
    base = Meter(key, f"flat {key}", key, 2400, (AddressingMode.SECONDARY,))
    return replace(base, **changes)


def read_values(telegrams):
    return telegrams[0]


class Rig:
    def __init__(
        self,
        meters: list[Meter],
        settings: ModbusSettings | None = None,
        reader: ValueReader = read_values,
    ) -> None:
        self.meters = meters
        self.snapshot = LiveSnapshot()
        self.clock = FixedClock(T0)
        self.source = LiveSnapshotSource(self.snapshot, lambda: self.meters, self.clock, reader)
        self.settings = settings or ModbusSettings(host="127.0.0.1", port=0)
        self.map = RegisterMap(MapConfig(self.settings), self.source, self.clock)

    def reading(self, key: str, values=(), *, ok=True, at=T0, identity=IDENTITY) -> None:
        telegrams = ((identity, tuple(values)),) if ok else ()
        self.snapshot.update(LiveReading(key, at, ok, telegrams, None if ok else "no reply"))

    def decoded_reading(self, key: str, telegrams: tuple, *, at=T0) -> None:
        self.snapshot.update(LiveReading(key, at, True, telegrams))

    def block(self, index: int, unit: int = 1) -> list[int]:
        result = self.map.read(unit, index * BLOCK_SIZE, BLOCK_SIZE)
        assert isinstance(result, list)
        return result

    def service(self) -> ModbusService:
        return ModbusService(lambda: self.settings, lambda: self.source, self.clock)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[tuple[ModbusService, int]]:
        service = self.service()
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            assert service.address is not None
            yield service, service.address[1]
            nursery.cancel_scope.cancel()


def field(registers: list[int], fields, name: str, order: str = "big"):
    """The value of a named header field of a block."""
    fld = next(f for f in fields if f.name == name)
    return decode_registers(registers[fld.offset :], fld.data_type, order)


def slot(registers: list[int], number: int, data_type: DataType, order: str = "big"):
    """The value in value slot ``number`` (from 1) of a meter block."""
    start = HEADER_SIZE + (number - 1) * SLOT_SIZE
    return decode_registers(registers[start : start + SLOT_SIZE], data_type, order)


LINE = re.compile(r"^\[(\d+)\]:\s+(-?[0-9.e+-]+)", re.MULTILINE)


async def mbpoll(port: int, unit: int, kind: str, reference: int, count: int, *options: str):
    """Poll once with PDU addressing (-0); returns {address: text} or the error text."""
    assert shutil.which("mbpoll"), "mbpoll is missing: apt-get install mbpoll (make test does)"
    command = ["mbpoll", "-m", "tcp", "-p", str(port), "-a", str(unit), "-0", "-1", "-o", "2"]
    command += ["-t", kind, "-r", str(reference), "-c", str(count), *options, "127.0.0.1"]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    if result.returncode:
        return result.stderr.decode() + result.stdout.decode()
    return {int(a): v for a, v in LINE.findall(result.stdout.decode())}
