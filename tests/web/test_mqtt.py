"""The MQTT publisher against a real mosquitto on loopback: readings, retained series and Home
Assistant discovery reach mosquitto_sub; a broker that is away misses nothing; a wrong
password and TLS give a clear status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
import trustme
from mqtt_broker import PASSWORD, USER, Broker, running, subscriber, tcp_port
from webrig import SERVED_ADMIN, served_gateway

from mbusgw.gateway.events import READINGS_STORED, Event
from mbusgw.gateway.services.mqtt import service
from mbusgw.gateway.services.mqtt.service import CURSOR
from mbusgw.gateway.settings import InterfaceConfig
from mbusgw.gateway.store import SeriesSpec, StoredReading

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=3)
# the series of the readings a test stores itself (the simulated meters have no such series)
COUNTER = SeriesSpec(b"\x04\xff\x06", "energy", "kWh", "mqtt test")


def settings(broker: Broker, **changes: Any) -> dict[str, Any]:
    return {
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker.port,
            "username": USER,
            "password": PASSWORD,
            "client_id": "site-a",
            **changes,
        }
    }


def messages(lines: list[str], prefix: str) -> list[tuple[str, Any]]:
    """``(topic, JSON payload)`` of the printed lines under ``prefix``."""
    found = []
    for line in lines:
        if line.startswith(prefix):
            topic, _, payload = line.partition(" ")
            found.append((topic, json.loads(payload)))
    return found


def received(lines: list[str]) -> set[tuple[str, str]]:
    """``(meter key, read_at)`` of every reading the printed lines hold."""
    return {(p["meter"]["key"], p["read_at"]) for _, p in messages(lines, "mbusgw/meters/")}


async def status_of(http: Any) -> dict[str, Any]:
    return (await http.get("/api/v1/mqtt/status", auth=SERVED_ADMIN)).json()


async def wait_status(http: Any, **wanted: Any) -> dict[str, Any]:
    while True:
        status = await status_of(http)
        if all(status[k] == v for k, v in wanted.items()):
            return status
        await trio.sleep(0.05)


async def test_readings_discovery_and_an_outage_without_loss(tmp_path: Path) -> None:
    broker = Broker(tcp_port(), tmp_path / "broker")
    with trio.fail_after(90):
        async with served_gateway(tmp_path / "gw", LINE) as (gateway, http):
            keys = [m.key for m in gateway.meters]
            async with running(broker):
                async with subscriber(broker, "mbusgw/meters/+/reading", client_id="backend"):
                    pass  # the backend's session: the broker keeps its readings from now on
                await gateway.update_settings(settings(broker))
                await wait_status(http, connected=True)
                await gateway.read_all()
                async with subscriber(broker, "mbusgw/#", "homeassistant/#") as late:
                    # retained: the latest value of each series, the discovery configs
                    for key in keys:  # each meter a device of its own
                        await late.wait_for(f"homeassistant/sensor/mbusgw_mbusgw_{key}/")
                        await late.wait_for(f"mbusgw/meters/{key}/series/")
                    await late.wait_for("mbusgw/status online")
                    series = messages(late.lines, "mbusgw/meters/")
                configs = messages(late.lines, "homeassistant/sensor/")
                # the simulated meters are water meters: their volume is Home Assistant's water
                water = [c for _, c in configs if c.get("device_class") == "water"]
                assert water and all(c["state_class"] == "total_increasing" for c in water)
                assert all(c["unit_of_measurement"] == "m³" for c in water)
                flows = [c for _, c in configs if c.get("device_class") == "volume_flow_rate"]
                assert flows and all(c["state_class"] == "measurement" for c in flows)
                assert not [c for _, c in configs if "fabrication" in c["name"]]
                nodes = {c["device"]["identifiers"][0] for _, c in configs}
                assert len([n for n in nodes if n.endswith(tuple(keys))]) == 3
                assert "mbusgw_mbusgw" in nodes  # the gateway is a device of its own
                state = [p for t, p in series if "/series/" in t][0]
                assert {"read_at", "unit", "value", "float", "quantity"} <= set(state)

            # away: three cycles, a second apart (one reading per meter and second)
            for _ in range(3):
                await trio.sleep(1.05)
                await gateway.read_all()
            down = await wait_status(http, connected=False)
            assert down["last_error"]
            async with (
                running(broker),
                subscriber(broker, "mbusgw/meters/+/reading", client_id="backend") as sub,
            ):
                await sub.wait_for("mbusgw/meters/", 12)
                await wait_status(http, connected=True, backlog=0)
                start = gateway.store.record("cursors", CURSOR)["start"]
                stored = {
                    (key, datetime.fromtimestamp(int(at), UTC).isoformat())
                    for key in keys
                    for at in gateway.store.meter_log(key, since=start).received_at
                }
                # the broker acknowledged them all; the backend may still be receiving the last
                while not stored <= (got := received(sub.lines)):
                    await trio.sleep(0.05)
            readings = messages(sub.lines, "mbusgw/meters/")
            assert len(stored) >= 12 and got == stored
            reading = readings[0][1]
            assert reading["status"] == "ok" and reading["values"]
            volume = next(v for v in reading["values"] if v["quantity"] == "volume")
            assert float(volume["value"]) == volume["float"] and volume["unit"] == "m³"
            cursor = gateway.store.record("cursors", CURSOR)
            assert set(cursor["meters"]) == set(keys)


async def stored(gateway: Any, key: str, second: int, *counts: int) -> None:
    """Readings of ``key`` received in one second (one per count), told like a cycle's."""
    await gateway.writer.put_readings(
        [StoredReading.of(key, second, [(COUNTER, count)]) for count in counts]
    )
    gateway.events.publish(Event(READINGS_STORED, gateway.clock.now(), None, {"meters": [key]}))


async def stored_many(gateway: Any, key: str, second: int, count: int) -> None:
    """``count`` readings of ``key``, a second apart from ``second`` on, told as one batch."""
    await gateway.writer.put_readings(
        [StoredReading.of(key, second + i, [(COUNTER, i)]) for i in range(count)]
    )
    gateway.events.publish(Event(READINGS_STORED, gateway.clock.now(), None, {"meters": [key]}))


async def cursor_at(gateway: Any, key: str, position: list[int]) -> None:
    """Until the broker has acknowledged the meter's readings up to ``position``."""
    while (gateway.store.record("cursors", CURSOR) or {}).get("meters", {}).get(key) != position:
        await trio.sleep(0.05)


@asynccontextmanager
async def quiet_gateway(tmp_path: Path) -> AsyncIterator[tuple[Any, Any, Broker, str]]:
    """The gateway once its reading at start-up is stored (no other reading comes in the
    test's way), a broker not yet running, and the key of the meter the test stores for."""
    async with served_gateway(tmp_path / "gw", LINE) as (gateway, http):
        while not any("read at start" in e.text for e in gateway.store.system_log()):
            await trio.sleep(0.05)
        yield gateway, http, Broker(tcp_port(), tmp_path / "broker"), gateway.meters[0].key


@asynccontextmanager
async def heard(broker: Broker) -> AsyncIterator[Any]:
    """The running broker and a subscriber to the readings (its printed lines)."""
    async with running(broker), subscriber(broker, "mbusgw/meters/+/reading") as sub:
        yield sub


async def arrived(sub: Any, key: str, count: int) -> None:
    """Until the subscriber has ``count`` of the meter's readings: the broker acknowledges a
    message (which moves the cursor) before its subscribers have it."""
    while len(counts(sub.lines, key)) < count:
        await trio.sleep(0.05)


def counts(lines: list[str], key: str) -> list[int]:
    """The counts of the meter's published readings that the test stored, in arrival order."""
    return [
        v["value"]
        for _, p in messages(lines, f"mbusgw/meters/{key}/")
        for v in p["values"]
        if v["description"] == COUNTER.description
    ]


async def test_readings_in_one_second_are_each_published_once(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with quiet_gateway(tmp_path) as (gateway, http, broker, key):
            async with heard(broker) as sub:
                await gateway.update_settings(settings(broker))
                await wait_status(http, connected=True)
                second = int(gateway.clock.now().timestamp())
                await stored(gateway, key, second, 1)
                await cursor_at(gateway, key, [second, 1])
                # two more in the same second, after the first was acknowledged
                await stored(gateway, key, second, 2, 3)
                await cursor_at(gateway, key, [second, 3])
                await stored(gateway, key, second + 1, 4)
                await cursor_at(gateway, key, [second + 1, 1])
                await arrived(sub, key, 4)
            assert counts(sub.lines, key) == [1, 2, 3, 4]


async def test_a_cursor_of_whole_seconds_is_read_and_converted(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with quiet_gateway(tmp_path) as (gateway, _, broker, key):
            second = int(gateway.clock.now().timestamp())
            await stored(gateway, key, second, 1, 2)  # sent before, by the older cursor
            await stored(gateway, key, second + 1, 3)
            old = {"meters": {key: second}, "start": second - 60}
            await gateway.writer.put_record("cursors", CURSOR, old)
            async with heard(broker) as sub:
                await gateway.update_settings(settings(broker))
                await cursor_at(gateway, key, [second + 1, 1])
                await stored(gateway, key, second + 1, 4)
                await cursor_at(gateway, key, [second + 1, 2])
                await arrived(sub, key, 2)
            assert counts(sub.lines, key) == [3, 4]
            record = gateway.store.record("cursors", CURSOR)
            assert record["meters"][key] == [second + 1, 2] and record["start"] == second - 60


async def test_wrong_password_and_tls_give_a_clear_status(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    folder = tmp_path / "broker"
    folder.mkdir()
    files = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(files[0]))
    leaf.cert_chain_pems[0].write_to_path(str(files[1]))
    leaf.private_key_pem.write_to_path(str(files[2]))
    broker = Broker(tcp_port(), folder, tls=files)
    with trio.fail_after(60):
        async with served_gateway(tmp_path / "gw", LINE) as (gateway, http), running(broker):
            trusted = ca.cert_pem.bytes().decode()
            await gateway.update_settings(settings(broker, tls=True, ca_certificate=trusted))
            await wait_status(http, connected=True)

            await gateway.update_settings(settings(broker, password="not-it"))
            refused = await wait_status(http, connected=False)
            while not (refused["last_error"] or "").startswith("the broker refused"):
                refused = await status_of(http)
            assert "not authori" in refused["last_error"].lower()
            page = await http.get("/integrations", auth=SERVED_ADMIN)
            assert "not connected" in page.text and "Not authori" in page.text

            stranger = trustme.CA().cert_pem.bytes().decode()
            await gateway.update_settings(settings(broker, password=PASSWORD,
                                                   ca_certificate=stranger))  # fmt: skip
            while "not trusted" not in ((await status_of(http))["last_error"] or ""):
                await trio.sleep(0.05)
            assert PASSWORD not in str(await http.get("/api/v1/settings", auth=SERVED_ADMIN))


async def test_availability_says_offline_when_the_publisher_stops(tmp_path: Path) -> None:
    broker = Broker(tcp_port(), tmp_path / "broker")
    with trio.fail_after(30):
        async with (
            served_gateway(tmp_path / "gw", LINE) as (gateway, http),
            running(broker),
            subscriber(broker, "mbusgw/status") as sub,
        ):
            await gateway.update_settings(settings(broker))
            await sub.wait_for("mbusgw/status online")
            await gateway.update_settings({"mqtt": {"enabled": False}})
            await sub.wait_for("mbusgw/status offline")
            status = await wait_status(http, connected=False)
    assert status["enabled"] is False and status["last_error"] is None


async def test_a_broker_lost_in_the_middle_of_a_backlog_misses_nothing(tmp_path: Path) -> None:
    # a backlog big enough that its messages are still being sent and acknowledged when the
    # broker goes (its first quarter made): what it did not acknowledge comes again
    backlog = 2000
    readings = "mbusgw/meters/+/reading"
    with trio.fail_after(60):
        async with quiet_gateway(tmp_path) as (gateway, http, broker, key):
            async with running(broker):
                async with subscriber(broker, readings, client_id="backend"):
                    pass  # the backend's session: the broker keeps its readings from now on
                await gateway.update_settings(settings(broker))
                await wait_status(http, connected=True)
                second = int(gateway.clock.now().timestamp())  # not before the cursor's start
                published = (await status_of(http))["published"]
                async with subscriber(broker, readings, client_id="backend") as first:
                    await stored_many(gateway, key, second, backlog)
                    while gateway.mqtt.status.published < published + backlog // 4:
                        await trio.sleep(0)
            await wait_status(http, connected=False)
            async with running(broker), subscriber(broker, readings, client_id="backend") as then:
                await cursor_at(gateway, key, [second + backlog - 1, 1])
                # acknowledged by the broker: each reading reaches the backend (a lost one
                # never does, and the test runs out of time)
                missing = set(range(backlog)) - set(counts(first.lines, key))
                while missing - set(counts(then.lines, key)):
                    seen = len(then.lines)
                    await then.wait_for("", seen + 1)
    assert not missing - set(counts(then.lines, key))


async def test_a_backlog_beyond_the_messages_in_flight_waits_for_acknowledgements(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # a window smaller than a pipelining step: the publisher waits for acknowledgements
    monkeypatch.setattr(service, "IN_FLIGHT", 50)
    monkeypatch.setattr(service, "PIPELINE_MESSAGES", 20)
    backlog = 600
    with trio.fail_after(30):
        async with quiet_gateway(tmp_path) as (gateway, http, broker, key), heard(broker) as sub:
            await gateway.update_settings(settings(broker))
            await wait_status(http, connected=True)
            second = int(gateway.clock.now().timestamp())
            await stored_many(gateway, key, second, backlog)
            await cursor_at(gateway, key, [second + backlog - 1, 1])
            await sub.wait_for(f'"value":{backlog - 1},')
    assert counts(sub.lines, key) == list(range(backlog))
