"""A backlog is published with at most ``IN_FLIGHT`` messages awaiting their acknowledgement
(the client holds each until then: a whole cycle queued at once held tens of megabytes), and
every reading still arrives once, in order, through a real broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from test_mqtt import (
    arrived,
    counts,
    cursor_at,
    heard,
    quiet_gateway,
    settings,
    stored,
    wait_status,
)

from mbusgw.gateway.services.mqtt import service as mqtt_service


async def test_a_backlog_goes_out_a_window_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt_service, "IN_FLIGHT", 2)
    with trio.fail_after(60):  # a broker, a gateway and a backlog on a loaded machine
        async with quiet_gateway(tmp_path) as (gateway, http, broker, key):
            # switched on while no broker runs: the publisher has taken its start (readings
            # stored from then on are published) once its first connection has failed
            await gateway.update_settings(settings(broker))
            while not (await wait_status(http, connected=False))["last_error"]:
                await trio.sleep(0.05)
            second = int(gateway.clock.now().timestamp()) + 1  # after that start
            for n in range(12):  # stored while no broker runs: a backlog of 12 seconds
                await stored(gateway, key, second + n, n)
            service = gateway.mqtt
            send = service._send
            waiting: list[int] = []

            def counted(*args: Any) -> None:
                send(*args)
                waiting.append(len(service._unacked))

            monkeypatch.setattr(service, "_send", counted)
            async with heard(broker) as sub:
                await wait_status(http, connected=True)
                await cursor_at(gateway, key, [second + 11, 1])
                await arrived(sub, key, 12)
            assert counts(sub.lines, key) == list(range(12))
    # each reading waits for room; the newest's series states follow it (one value here)
    assert len(waiting) >= 12 and max(waiting) <= 2 + 1
