"""Every northbound service of the integrations issue switched on and in use, for ``bench
gateway --services all``: the SNMP agent (walked by ``snmpwalk`` every 5 s), the MQTT publisher
to a local ``mosquitto`` (QoS 1), ``/metrics`` scraped by ``curl`` every second and the event
stream held open by ``curl``. The clients run as processes of their own, so that only the
gateway's CPU time and memory are measured: the few API calls made here go through ``curl``
too, as an HTTP client library in this process would count as the gateway's memory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from mbusgw.gateway.app import Gateway

ADMIN = ("engineer", "Install2024")
METRICS_TOKEN = "bench-metrics-token-0123456789abcdef"
TOOLS = ("mosquitto", "curl", "snmpwalk")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise SystemExit(f"--services all needs {name}: run `bash tools/system-deps.sh`")
    return found


def _start(command: list[str]) -> subprocess.Popen:
    # a process group of its own: a shell loop and the client it runs stop together
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


async def _listening(port: int) -> None:
    with trio.fail_after(10):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


async def _curl(curl: str, url: str, *options: str) -> tuple[int, bytes]:
    """``curl`` on ``url``: the HTTP status and the body."""
    done = await trio.run_process(
        [curl, "-s", "-o", "-", "-w", "\n%{http_code}", *options, url], capture_stdout=True
    )
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


async def _post_json(curl: str, url: str, user: tuple[str, str], payload: dict) -> dict:
    status, body = await _curl(
        curl, url, "-u", ":".join(user), "-H", "Content-Type: application/json",
        "-d", json.dumps(payload),
    )  # fmt: skip
    assert 200 <= status < 300, body[:500]
    return json.loads(body)


async def _api_token(curl: str, base: str) -> str:
    """The first login done (the default account must change its password), then a token."""
    first = {"current_password": "admin", "new_username": ADMIN[0], "new_password": ADMIN[1]}
    await _post_json(curl, f"{base}/api/v1/me/password", ("admin", "admin"), first)
    made = await _post_json(curl, f"{base}/api/v1/me/tokens", ADMIN, {"label": "bench"})
    return made["token"]


@asynccontextmanager
async def all_services(gateway: Gateway, directory: Path) -> AsyncIterator[dict[str, Any]]:
    """The services on and their clients running while inside; yields a dict that holds, once
    the block is left, what each service reported (so a run shows they really worked)."""
    tools = {name: _tool(name) for name in TOOLS}
    web = gateway.running_northbound["web"]
    base = web.urls[0]  # type: ignore[attr-defined]
    curl = tools["curl"]
    token = await _api_token(curl, base)
    broker_port = _free_port()
    config = directory / "mosquitto.conf"
    config.write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\n")
    clients = [_start([tools["mosquitto"], "-c", str(config)])]
    report: dict[str, Any] = {}
    try:
        await _listening(broker_port)
        await gateway.update_settings(
            {
                "snmp": {"enabled": True, "host": "127.0.0.1", "port": 0},
                "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker_port, "qos": 1},
                "metrics": {"enabled": True, "token": METRICS_TOKEN},
            }
        )
        with trio.fail_after(10):
            while gateway.snmp is None or gateway.snmp.address is None:
                await trio.sleep(0.05)
        host, port = gateway.snmp.address
        bearer = f"'Authorization: Bearer {METRICS_TOKEN}'"
        scrape = f"{curl} -sf -o /dev/null -H {bearer} {base}/metrics"
        walk = f"{tools['snmpwalk']} -v2c -c public -On {host}:{port} .1.3.6.1.4.1"
        clients += [
            _start(["sh", "-c", f"while :; do {scrape}; sleep 1; done"]),
            _start(["sh", "-c", f"while :; do {walk} >/dev/null; sleep 5; done"]),
            _start([curl, "-sN", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}",
                    f"{base}/api/v1/events/stream"]),
        ]  # fmt: skip
        yield report
        status, scraped = await _curl(
            curl, f"{base}/metrics", "-H", f"Authorization: Bearer {token}"
        )
        report.update(
            snmp_requests=gateway.snmp.requests,
            mqtt=gateway.mqtt.status.as_dict() if gateway.mqtt is not None else None,
            metrics_status=status,
            metrics_bytes=len(scraped),
        )
    finally:
        for client in clients:
            os.killpg(client.pid, signal.SIGTERM)
            client.wait(10)
