"""mosquitto on a loopback port for the MQTT tests (password, TLS and persistence as asked),
and mosquitto_sub as a subscriber whose printed ``topic payload`` lines the tests read."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
from process_lines import PrintedLines, start_process

USER, PASSWORD = "gateway", "broker-pass-1"


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    assert found, f"{name} is missing: run `bash tools/system-deps.sh` (Debian mosquitto)"
    return found


def tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Broker:
    port: int
    folder: Path
    tls: tuple[Path, Path, Path] | None = None  # ca, certificate, key


def broker_config(broker: Broker) -> Path:
    passwords = broker.folder / "passwords"
    if not passwords.exists():
        subprocess.run([tool("mosquitto_passwd"), "-b", "-c", str(passwords), USER, PASSWORD],
                       check=True, capture_output=True)  # fmt: skip
    lines = [
        f"listener {broker.port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {passwords}",
        "persistence true",
        "max_queued_messages 0",  # a backend's session keeps every reading (1000 by default)
        f"persistence_location {broker.folder}/",
        "log_dest stdout",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to "mosquitto", who cannot read tmp_path
    if broker.tls:
        ca, cert, key = broker.tls
        lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
    config = broker.folder / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


@asynccontextmanager
async def running(broker: Broker) -> AsyncIterator[Broker]:
    """The broker until the block ends (then stopped, its persistence saved)."""
    broker.folder.mkdir(parents=True, exist_ok=True)
    argv = [tool("mosquitto"), "-c", str(broker_config(broker))]
    async with trio.open_nursery() as nursery:
        process = await start_process(nursery, argv)
        with trio.fail_after(10):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", broker.port)
                except OSError:
                    await trio.sleep(0.05)
                    continue
                await stream.aclose()
                break
        try:
            yield broker
        finally:
            process.terminate()


@asynccontextmanager
async def subscriber(
    broker: Broker, *topics: str, client_id: str | None = None
) -> AsyncIterator[PrintedLines]:
    """mosquitto_sub at QoS 1 printing ``topic payload``; with ``client_id`` its session
    persists (the broker keeps its messages while it is away)."""
    # line-buffered: mosquitto_sub's stdout is a pipe here
    argv = [tool("stdbuf"), "-oL", tool("mosquitto_sub"), "-h", "127.0.0.1",
            "-p", str(broker.port), "-u", USER, "-P", PASSWORD, "-q", "1", "-v", "-d"]  # fmt: skip
    if client_id:
        argv += ["-c", "-i", client_id]
    for topic in topics:
        argv += ["-t", topic]
    printed = PrintedLines()
    async with trio.open_nursery() as nursery:
        process = await start_process(nursery, argv, printed)
        with trio.fail_after(10):
            await printed.wait_for("received SUBACK")
        try:
            yield printed
        finally:
            process.kill()  # a subscriber has nothing to save
