"""Schemathesis against the served API of the real gateway (simulated bus): requests generated
from the OpenAPI document, a bounded number per operation; not one may end in a server error,
and every response must match the document."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
import trio
from webrig import free_port

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig

pytestmark = pytest.mark.slow

# Operations that end the run (restart, reset, restore) or move the API to HTTPS.
# the event stream never ends (a client reads it until it leaves): tests/web/test_events.py
EXCLUDED = (
    "device_restart",
    "device_factory_reset",
    "backup_restore",
    "tls_update",
    "events_stream",
)
CHECKS = ",".join(
    ("not_a_server_error", "status_code_conformance", "content_type_conformance")
    + ("response_schema_conformance",)
)


async def test_no_server_errors(tmp_path: Path) -> None:
    port = free_port()
    line = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=4)
    startup = StartupConfig(
        data_dir=tmp_path / "data", web_host="127.0.0.1", web_port=port, interfaces=(line,)
    )
    gateway = Gateway(startup)
    base = f"http://127.0.0.1:{port}"
    with trio.fail_after(900):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            async with httpx.AsyncClient(base_url=base) as http:
                first = await http.post(
                    "/api/v1/me/password",
                    auth=("admin", "admin"),
                    json={"current_password": "admin", "new_username": "fuzzer"}
                    | {"new_password": "Fuzzing123"},
                )
                assert first.status_code == 200
                created = await http.post(
                    "/api/v1/me/tokens", auth=("fuzzer", "Fuzzing123"), json={"label": "st"}
                )
                token = created.json()["token"]
            command = [
                str(Path(sys.executable).with_name("st")),
                "run",
                f"{base}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                CHECKS,
                "--max-examples",
                "8",
                "--seed",
                "7",
                "--workers",
                "1",
                "--request-timeout",
                "40",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path / "report"),
            ]
            for operation in EXCLUDED:
                command += ["--exclude-operation-id", operation]
            done = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                          check=False)  # fmt: skip
            gateway.stop()
    output = done.stdout.decode() + done.stderr.decode()
    artefacts = Path(__file__).resolve().parents[2] / "test-artefacts"
    artefacts.mkdir(exist_ok=True)
    (artefacts / "schemathesis.txt").write_text(output)
    # Failures are responses: a server error or one the document does not describe; errors are
    # requests without a response (a read timeout of the client, a dropped connection).
    assert "FAILURES" not in output, output[output.find("FAILURES") :][:6000]
    assert "ERRORS" not in output, output[output.find("ERRORS") :][:6000]
    assert "Server error" not in output
    assert "passed" in output.lower()
