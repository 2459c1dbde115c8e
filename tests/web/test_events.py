"""The event history and the Server-Sent Events stream: over real HTTP from a running gateway,
and the history's filters against the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import trio
from webclient import body
from webrig import SERVED_ADMIN, served_gateway

from mbusgw.gateway.events import (
    METER_FAILED,
    METER_RECOVERED,
    READINGS_STORED,
    Event,
    EventBus,
)
from mbusgw.gateway.settings import InterfaceConfig

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=2)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def messages(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The stream's events, each as ``{"id", "event", "data"}``; comments are skipped."""
    message: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if message:
                yield message
            message = {}
            continue
        field, _, value = line.partition(": ")
        message[field] = json.loads(value) if field == "data" else value


async def test_the_stream_delivers_a_failed_meter_within_a_second(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with served_gateway(tmp_path, LINE) as (gateway, http):
            await gateway.update_settings({"mbus": {"timing": {"read_retries": 0}}})
            silent = gateway.simulators["sim1"].line.meters[1]
            url = "/api/v1/events/stream?kind=meter_failed,meter_recovered"
            async with http.stream("GET", url, auth=SERVED_ADMIN) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                stream = messages(response)
                silent.silent = True
                reading = await gateway.read_meter(silent.identity.id)
                assert not reading.ok
                with trio.fail_after(1.0):  # the bound the stream promises
                    failed = await anext(stream)
                silent.silent = False
                assert (await gateway.read_meter(silent.identity.id)).ok
                with trio.fail_after(1.0):
                    recovered = await anext(stream)
            assert failed["event"] == METER_FAILED
            assert failed["data"]["meter"] == silent.identity.id
            assert "no response" in failed["data"]["detail"]["error"].lower()
            assert recovered["event"] == METER_RECOVERED
            assert int(recovered["id"]) > int(failed["id"])

            # a client that reconnects gets what it missed from the history
            headers = {"Last-Event-ID": str(int(failed["id"]) - 1)}
            async with http.stream("GET", url, auth=SERVED_ADMIN, headers=headers) as again:
                replay = messages(again)
                with trio.fail_after(5):
                    assert [await anext(replay), await anext(replay)] == [failed, recovered]

            history = await http.get("/api/v1/events", auth=SERVED_ADMIN)
            kinds = [event["kind"] for event in history.json()["events"]]
            assert "settings_changed" in kinds  # the timing change above
            assert "service_restarted" in kinds  # QUIET's reading change restarted the schedule
            assert (await http.get(url)).status_code == 401


async def test_history_filters_and_refusals(gateway: Any, admin: Any) -> None:
    bus: EventBus = gateway.events
    bus.publish(Event(METER_FAILED, T0, "m1", {"error": "no response"}))
    bus.publish(Event(READINGS_STORED, T0, None, {"meters": ["m1"]}))  # internal: not kept
    bus.publish(Event(METER_FAILED, T0.replace(hour=2), "m2", {"error": "no response"}))
    bus.publish(Event(METER_RECOVERED, T0.replace(hour=3), "m1"))

    every = body(await admin.get("/api/v1/events"))
    assert [(e["id"], e["kind"], e["meter"]) for e in every["events"]] == [
        (1, METER_FAILED, "m1"),
        (2, METER_FAILED, "m2"),
        (3, METER_RECOVERED, "m1"),
    ]
    assert every["last_id"] == 3
    assert every["events"][0]["at"] == "2026-03-01T00:00:00+00:00"
    one = body(await admin.get("/api/v1/events?meter=m1&kind=meter_recovered"))
    assert [e["id"] for e in one["events"]] == [3]
    assert [e["id"] for e in body(await admin.get("/api/v1/events?after=1"))["events"]] == [2, 3]
    timed = body(
        await admin.get("/api/v1/events?since=2026-03-01T01:00:00Z&until=2026-03-01T03:00:00Z")
    )
    assert [e["id"] for e in timed["events"]] == [2]
    assert [e["id"] for e in body(await admin.get("/api/v1/events?limit=2"))["events"]] == [2, 3]
    refused = await admin.get("/api/v1/events?kind=meter_exploded")
    assert refused.status_code == 400
    assert "meter_exploded" in body(refused)["error"]["message"]
    assert (await admin.get("/api/v1/events?limit=0")).status_code == 400
