"""Real telegrams through the decoder, the continuous-read snapshot and the map: every numeric
record of every libmbus test frame lands in its slot with the decoder's own value (the Record
objects, a separate path from the record array the map reads)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import trio
from modbus_rig import Rig, field, meter, slot
from pymodbus.client import ModbusTcpClient

from mbusgw.core import decode
from mbusgw.gateway.modbus_encoding import DataType, round_half_away
from mbusgw.gateway.services.modbus_map import METER_FIELDS, SLOT_SIZE
from mbusgw.gateway.services.modbus_source import (
    MeterState,
    manufacturer_code,
    telegram_values,
)
from mbusgw.gateway.settings import Settings

FRAMES = sorted((Path(__file__).parents[1] / "data" / "libmbus" / "test-frames").glob("*.hex"))
KEY = "00000001"


def frame(path: Path) -> bytes:
    return bytes.fromhex("".join(path.read_text().split()))


def numeric_records(telegrams) -> list:
    return [r for t in telegrams for r in t.records if r.kind not in ("text", "bytes")]


def seconds(value) -> int:
    if isinstance(value, datetime):
        return int(value.replace(tzinfo=UTC).timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    return value.hour * 3600 + value.minute * 60 + value.second


def rig_for(telegrams, **modbus) -> Rig:
    settings = (
        Settings()
        .updated(
            {"modbus": {"host": "127.0.0.1", "port": 0, "meters": {KEY: {"unit_id": 2}}, **modbus}}
        )
        .modbus
    )
    rig = Rig([meter(KEY)], settings, telegram_values)
    rig.decoded_reading(KEY, telegrams)
    return rig


def meter_view(rig: Rig, slots: int) -> list[int]:
    registers: list[int] = []
    end = 17 + max(slots, 27) * SLOT_SIZE
    for address in range(0, end, 125):
        part = rig.map.read(2, address, min(125, end - address))
        assert isinstance(part, list)
        registers += part
    return registers


@pytest.mark.parametrize("path", FRAMES, ids=[p.stem for p in FRAMES])
def test_every_record_of_a_real_frame_in_float64_and_exact_int64(path: Path) -> None:
    telegrams = (decode(frame(path)),)
    records = numeric_records(telegrams)
    as_float = meter_view(rig_for(telegrams, data_type="float64"), len(records))
    as_int = meter_view(rig_for(telegrams, data_type="int64", constant="1000"), len(records))
    assert field(as_float, METER_FIELDS, "value_count") == len(records)
    for number, record in enumerate(records, start=1):
        if record.kind in ("date", "datetime", "time"):
            # seconds, uint32 unless overridden, never scaled; the marker when invalid
            expected = None if record.value is None or record.invalid else seconds(record.value)
            assert slot(as_float, number, DataType.UINT32) == expected
            assert slot(as_int, number, DataType.UINT32) == expected
            continue
        got_float = slot(as_float, number, DataType.FLOAT64)
        got_int = slot(as_int, number, DataType.INT64)
        if record.value is None or record.invalid:
            assert got_float is None and got_int is None
        elif record.kind == "real":
            assert got_float == pytest.approx(record.value, rel=1e-6)
        else:
            exact = Fraction(Decimal(record.value))
            assert got_float == float(exact), record
            limit = 2**63 - 1
            assert got_int == max(-limit, min(limit, round_half_away(exact * 1000))), record


def test_an_id_with_hex_digits_keeps_its_nibbles() -> None:
    # identification 1234ABCD (least significant byte first), manufacturer "ABC", water
    header = bytes.fromhex("CDAB3412 4304 01 07 2A 00 0000")
    body = bytes((0x08, 0x01, 0x72)) + header + bytes.fromhex("0413D2040000")
    telegram = decode(
        bytes((0x68, len(body), len(body), 0x68)) + body + bytes((sum(body) & 0xFF, 0x16))
    )
    assert telegram.header.id == "1234ABCD"
    rig = rig_for((telegram,))
    assert field(rig.block(1), METER_FIELDS, "id") == 0x1234ABCD
    installed = Rig([meter("9876FEDC"), meter("00000042")])
    assert field(installed.block(1), METER_FIELDS, "id") == 0x9876FEDC  # from the meter list
    assert field(installed.block(2), METER_FIELDS, "id") == 0x00000042


def test_identity_comes_from_the_telegram_header() -> None:
    telegram = decode(frame(next(p for p in FRAMES if p.stem == "ELV-Elvaco-CMa10")))
    rig = rig_for((telegram,))
    block = rig.block(1)
    header = telegram.header
    assert field(block, METER_FIELDS, "state") == MeterState.OK
    assert field(block, METER_FIELDS, "id") == int(header.id, 16)  # the ID's nibbles
    assert field(block, METER_FIELDS, "manufacturer") == manufacturer_code(header.manufacturer)
    assert field(block, METER_FIELDS, "version") == header.version
    assert field(block, METER_FIELDS, "medium") == header.medium
    assert field(block, METER_FIELDS, "access_number") == header.access_number
    assert field(block, METER_FIELDS, "status_byte") == header.status


def test_a_multi_telegram_reading_fills_the_slots_in_telegram_order() -> None:
    first = decode(frame(next(p for p in FRAMES if p.stem == "ELV-Elvaco-CMa10")))
    second = decode(frame(next(p for p in FRAMES if p.stem == "kamstrup_382_005")))
    identity, values = telegram_values((first, second))
    records = numeric_records((first, second))
    assert len(values) == len(records)
    assert identity.id == int(first.header.id, 16)
    # the series identity is the record's DIF/VIF bytes
    assert [v.series.hex().upper() for v in values] == [r.dif_vif.upper() for r in records]


async def test_real_values_through_the_server() -> None:
    telegram = decode(frame(next(p for p in FRAMES if p.stem == "landis+gyr_ultraheat_t230")))
    records = numeric_records((telegram,))[:27]
    rig = rig_for((telegram,), data_type="float32")

    def read(client: ModbusTcpClient) -> list[float]:
        response = client.read_input_registers(125, count=125, device_id=1)
        words = response.registers
        return [
            client.convert_from_registers(words[17 + 4 * i : 19 + 4 * i], client.DATATYPE.FLOAT32)
            for i in range(len(records))
        ]

    with trio.fail_after(10):
        async with rig.serving() as (_, port):

            def run():
                client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
                assert client.connect()
                try:
                    return read(client)
                finally:
                    client.close()

            got = await trio.to_thread.run_sync(run)
    for value, record in zip(got, records, strict=True):
        if record.value is None:
            assert math.isnan(value)
        elif record.kind in ("decimal", "real"):
            assert value == pytest.approx(float(record.value), rel=1e-6)
