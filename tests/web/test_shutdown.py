"""SIGTERM while a web request is in flight: the request is answered, then the gateway stops.

The client sends half of a request body, the gateway gets SIGTERM, the client sends the rest:
the web server has stopped accepting but answers it within the shutdown grace period, and the
process ends cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gatewaykit import seed_settings

QUIET = {"modbus": {"enabled": False}, "reading": {"read_at_start": False}}
BODY = b'{"user": "nobody", "password": "' + b"x" * 200 + b'"}'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the web interface did not start")


def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path) -> None:
    seed_settings(tmp_path, QUIET)
    port = free_port()
    config = tmp_path / "mbusgw.toml"
    config.write_text(
        f'[web]\nport = {port}\n\n[[interfaces]]\nname = "a"\nkind = "simulator"\nmeters = 1\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mbusgw.gateway.cli", "run", "--data-dir", str(tmp_path)]
        + ["--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_serving(port, process)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
            head = (
                f"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
            )
            client.sendall(head.encode() + BODY[:10])
            time.sleep(0.5)  # the request is in flight: its body is not complete
            os.kill(process.pid, signal.SIGTERM)
            time.sleep(1.0)  # the gateway is shutting down meanwhile
            client.sendall(BODY[10:])
            answer = b""
            while b"\r\n\r\n" not in answer and (chunk := client.recv(4096)):
                answer += chunk
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert answer.startswith(b"HTTP/1.1 "), output
    assert process.returncode == 0, output
    assert "SIGTERM: stopping" in output and "gateway: stopped" in output
