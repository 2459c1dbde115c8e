"""The ``mbusgw`` command line itself: help without the heavy modules, interrupts, messages."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mbusgw.gateway.cli import build_parser, main
from mbusgw.gateway.commands.decode import FRAME_FORMATS
from mbusgw.gateway.scan import ScanProgress
from mbusgw.gateway.search import LineSearch, SearchJob, SearchRequest

MBUSGW = [sys.executable, "-m", "mbusgw.gateway.cli"]
HEAVY = ("trio", "quart", "hypercorn", "lmdb", "pymodbus", "numpy", "openpyxl")


def every_help() -> list[list[str]]:
    """The --help of the command and of every command and action under it."""
    helps = [["--help"]]
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.choices and a.dest == "command"]
    for name, command in commands.choices.items():
        helps.append([name, "--help"])
        for action in command._actions:
            if action.dest == "action":
                helps += [[name, sub, "--help"] for sub in action.choices]
    return helps


def test_no_help_loads_a_heavy_module() -> None:
    helps = every_help()
    assert ["meters", "list", "--help"] in helps and len(helps) > 15
    probe = f"""
import contextlib, io, sys
from mbusgw.gateway.cli import main
for argv in {helps!r}:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main(argv)
        except SystemExit:
            pass
    assert "usage: mbusgw" in out.getvalue(), argv
print(" ".join(sorted(name for name in {HEAVY!r} if name in sys.modules)))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_the_decode_command_offers_the_decoders_frame_formats() -> None:
    from mbusgw.core.wmbus import FRAME_FORMATS as DECODER_FORMATS

    assert FRAME_FORMATS == DECODER_FORMATS


def test_a_running_search_adds_its_lines_into_one_progress() -> None:
    job = SearchJob(SearchRequest("secondary", expected=10), datetime.now(UTC))
    for line, found, done, eta in (("a", 2, 0.5, 4.0), ("b", 3, 0.25, 12.0)):
        job.lines[line] = LineSearch(line, (2400,), "scanning", found=found)
        job.lines[line].scan = ScanProgress(
            line, 2400, "secondary", found, 40, done, 4.0, eta, "1*"
        )
    state = job.as_dict()
    assert state["probes"] == 80 and state["done"] == 0.375  # the lines' mean
    assert state["eta_s"] == 12.0  # the lines run side by side: the slowest line's
    assert [line["found"] for line in state["lines"]] == [2, 3]
    job.lines["a"].bauds = (2400, 9600)  # a rate still to come: another whole scan
    assert job.lines["a"].eta == 4.0 + 8.0 and job.lines["a"].done == 0.25


def test_ctrl_c_during_a_scan_ends_it_with_a_message_and_status_130() -> None:
    with socket.socket() as converter:  # accepts the connection and never answers
        converter.bind(("127.0.0.1", 0))
        converter.listen()
        converter.settimeout(60)
        port = converter.getsockname()[1]
        scan = subprocess.Popen(
            [*MBUSGW, "scan", "--tcp", f"127.0.0.1:{port}", "--mode", "primary"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            connection, _ = converter.accept()  # the scan is under way
            with connection:
                connection.recv(16)  # its first probe
                scan.send_signal(signal.SIGINT)
                out, err = scan.communicate(timeout=30)
        finally:
            scan.kill()
    assert scan.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err


def test_listing_the_meters_of_a_missing_store_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["meters", "list", "--data-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "no store at" in err and "store.mdb" in err
    assert not (tmp_path / "none").exists()
