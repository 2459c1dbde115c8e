"""``mbusgw simulate``, ``mbusgw scan`` and ``mbusgw read`` as a user runs them: separate
processes talking over TCP and a pty."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mbusgw.gateway.simulator import scan_population

MBUSGW = [sys.executable, "-m", "mbusgw.gateway.cli"]
BAUD = "38400"


@contextmanager
def simulator(*args: str) -> Iterator[dict]:
    process = subprocess.Popen(
        [*MBUSGW, "simulate", "--baud", BAUD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        info["process"] = process
        yield info
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
        info["stats"] = json.loads(out)


def mbusgw(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MBUSGW, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_scan_and_read_a_simulated_converter(tmp_path: Path) -> None:
    expected = {m.identity.id for m in scan_population(4, seed=3 * 1000)}
    with simulator("--population", "random", "--meters", "4", "--seed", "3") as sim:
        scan = mbusgw("scan", "--tcp", sim["tcp"], "--mode", "secondary", "--baud", BAUD, "--json")
        assert scan.returncode == 0, scan.stderr
        found = json.loads(scan.stdout)
        assert {m["id"] for m in found} == expected
        assert all(m["install"]["AddressingMode"] == "secondary" for m in found)
        assert "100.0%" in scan.stderr  # the progress bar reached the end

        ident = sorted(expected)[0]
        read = mbusgw("read", "--tcp", sim["tcp"], "--address", ident, "--baud", BAUD, "--json")
        assert read.returncode == 0, read.stderr
        reading = json.loads(read.stdout)
        assert reading["mode"] == "secondary" and reading["complete"]
        assert reading["telegrams"][0]["header"]["id"] == ident

        state = tmp_path / "scan.json"
        resumable = ["scan", "--tcp", sim["tcp"], "--mode", "secondary", "--baud", BAUD]
        resumable += ["--state", str(state)]
        first = mbusgw(*resumable)
        assert first.returncode == 0, first.stderr
        saved = json.loads(state.read_text())
        assert saved["pending"] == [] and len(saved["found"]) == 4
        again = mbusgw(*resumable)
        assert again.returncode == 0 and again.stdout == first.stdout  # nothing left to probe
    assert sim["stats"]["sim0"]["requests"] > 0


def test_read_over_a_serial_port_prints_the_decoded_telegrams() -> None:
    with simulator("--pty", "--population", "default", "--meters", "3") as sim:
        read = mbusgw("read", "--port", sim["pty"], "--address", "2", "--baud", BAUD)
        assert read.returncode == 0, read.stderr
        assert "CI 0x72" in read.stdout and "telegram(s) in" in read.stdout
        missing = mbusgw("read", "--port", sim["pty"], "--address", "77", "--baud", BAUD)
        assert missing.returncode == 1
        assert "no response from primary 77 after 3 attempt(s)" in missing.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["scan", "--tcp", "nohostport", "--mode", "primary"], 2, "is not HOST:PORT"),
        (["scan", "--mode", "primary"], 2, "give a serial --port or a --tcp"),
        (["read", "--tcp", "127.0.0.1:1", "--address", "5"], 1, "cannot open tcp:127.0.0.1:1"),
        (["read", "--tcp", "127.0.0.1:1", "--address", "1234"], 2, "not 8 hexadecimal digits"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], status: int, message: str) -> None:
    result = mbusgw(*args)
    assert result.returncode == status
    assert message in result.stderr and "Traceback" not in result.stderr


def test_read_flags_a_configuration_word_that_names_no_encryption() -> None:
    # the default population's ninth meter answers with libmbus' example_data_01: word 27 B6
    # (mode 22) over plain records, which `mbusgw decode` decodes the same way
    with simulator("--population", "default", "--meters", "9") as sim:
        read = mbusgw("read", "--tcp", sim["tcp"], "--address", "9", "--baud", BAUD, "--json")
    assert read.returncode == 0, read.stderr
    (telegram,) = json.loads(read.stdout)["telegrams"]
    assert telegram["header"]["signature"] == 0xB627
    assert telegram["configuration_ignored"] is True
    assert len(telegram["records"]) == 6
