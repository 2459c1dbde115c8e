"""A value is invalid for every consumer alike: the REST and JSON-RPC latest values, the live
snapshot and the Modbus map agree (a record with an error VIFE, EN 13757-3 table 17, included).
Responses are validated against the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime

from webclient import Client, body
from webrig import METER_CSV, RigGateway

from mbusgw.core.records import decode
from mbusgw.gateway.live import LiveReading
from mbusgw.gateway.services.modbus_source import telegram_values
from mbusgw.gateway.store import SeriesNames, reading_from_telegrams

AT = datetime(2026, 12, 6, 23, 3, 3, tzinfo=UTC)
# identification 12345678; energy 12345 Wh with VIFE 0x15 "no data available", volume 1.234 m³
HEADER = bytes.fromhex("78563412 4304 01 07 2A 00 0000")
RECORDS = bytes.fromhex("04 83 15 39300000 04 13 D2040000")


def long_frame(data: bytes) -> bytes:
    body = bytes((0x08, 0x01, 0x72)) + data
    return bytes((0x68, len(body), len(body), 0x68)) + body + bytes((sum(body) & 0xFF, 0x16))


def flagged(values: list[dict]) -> dict[str, bool]:
    return {v["quantity"]: v.get("invalid", False) for v in values}


async def test_every_consumer_sees_the_same_invalid_flag(
    admin: Client, gateway: RigGateway
) -> None:
    installed = await admin.post(
        "/api/v1/meters", data=METER_CSV, headers={"Content-Type": "text/csv"}
    )
    assert installed.status_code == 200
    telegram = decode(long_frame(HEADER + RECORDS))
    reading = reading_from_telegrams(
        "12345678", (telegram,), int(AT.timestamp()), names=SeriesNames()
    )
    await gateway.writer.put_readings([reading])
    gateway.live.update(LiveReading("12345678", AT, True, (telegram,), None))
    expected = {"energy": True, "volume": False}

    latest = body(await admin.get("/api/v1/values/latest"))
    meter = next(m for m in latest["meters"] if m["key"] == "12345678")
    assert flagged(meter["values"]) == expected

    call = {"jsonrpc": "2.0", "id": 1, "method": "values.latest"}
    rpc = body(await admin.post("/api/jsonrpc", json=call))["result"]
    assert rpc == latest

    live = body(await admin.get("/api/v1/values/live"))
    [snapshot] = live["meters"]
    assert flagged(snapshot["values"]) == expected

    _, modbus = telegram_values((telegram,))
    assert [value.number is None for value in modbus] == [True, False]
