"""Searches that install what they find, the meter commands, the "not seen" event."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import trio
from gatewaykit import seed_settings

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.events import METER_NOT_SEEN
from mbusgw.gateway.search import SearchRequest
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig


def mbusgw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mbusgw.gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_search_finds_every_meter_installs_them_and_reports_progress(tmp_path: Path) -> None:
    interfaces = (
        InterfaceConfig(name="a", kind="simulator", baud=9600, meters=4),
        InterfaceConfig(name="b", kind="simulator", baud=9600, meters=3),
    )
    gateway = Gateway(StartupConfig(tmp_path, interfaces=interfaces), background=False)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            assert gateway.meters == []
            job = gateway.start_search(SearchRequest("secondary", hex_digits=True, expected=8))
            await job.done_event.wait()
            simulated = {
                m.identity.id for sim in gateway.simulators.values() for m in sim.line.meters
            }
            assert job.state == "done", job.error
            assert {found.identity.id for found in job.found} == simulated
            assert job.installed == 7 and job.warning == "8 meter(s) expected, only 7 found"
            assert {m.key for m in gateway.meters} == simulated
            assert job.as_dict()["done"] > 0.999 and job.as_dict()["probes"] > 7
            await gateway.writer.flush()
            warnings = [e.text for e in gateway.store.system_log() if e.origin == "search"]
            assert f"search {job.id}: 8 meter(s) expected, only 7 found" in warnings
            # searching one line again finds its meters: nothing new is installed
            again = await gateway.search(SearchRequest("secondary", interfaces=("b",)))
            assert len(again.found) == 3 and again.installed == 0
            # as many as expected: the search ends there, without a warning
            wire = gateway.simulators["a"].line.stats
            before, whole = wire.requests, job.as_dict()["probes"]
            enough = await gateway.search(
                SearchRequest("secondary", interfaces=("a",), hex_digits=True, expected=2)
            )
            assert len(enough.found) == 2 and enough.warning is None
            assert enough.as_dict()["expected"] == 2 and enough.as_dict()["lines"][0]["done"] < 1
            assert wire.requests - before < whole
            bad = await gateway.search(SearchRequest("secondary", interfaces=("nope",)))
            assert bad.state == "failed" and "no such interface: nope" in bad.error
            result = await gateway.read_all()
            assert len(result.readings) == 7 and not result.failed
            gateway.stop()


async def test_not_seen_is_reported_once_per_outage(tmp_path: Path) -> None:
    seed_settings(
        tmp_path,
        {
            "modbus": {"enabled": False},
            "reading": {"read_at_start": False, "not_seen_after_min": 60},
        },
    )
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=2),)
    gateway = Gateway(StartupConfig(tmp_path, interfaces=interfaces))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            events = gateway.events.subscribe()
            first, second = gateway.meters
            await gateway.read_meter(first.key)
            assert gateway.check_not_seen() == []
            gateway.started_at -= timedelta(hours=2)  # the gateway has run for two hours
            assert gateway.check_not_seen() == [second.key]
            assert gateway.check_not_seen() == []  # once per outage
            published = []
            while True:
                try:
                    published.append(events.receive_nowait())
                except trio.WouldBlock:
                    break
            not_seen = [e.meter_key for e in published if e.kind == METER_NOT_SEEN]
            assert not_seen == [second.key]
            gateway.stop()


def test_meter_commands(tmp_path: Path) -> None:
    template = mbusgw("meters", "template")
    assert template.returncode == 0 and template.stdout.startswith("Position,SecondaryAddress")
    good = tmp_path / "meters.csv"
    good.write_text(template.stdout)
    done = mbusgw("meters", "install", str(good), "--data-dir", str(tmp_path))
    assert done.returncode == 0 and "installed 4 meter(s)" in done.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("Position,SecondaryAddress,BaudRate,AddressingMode\nx,12,2400,secondary\n")
    refused = mbusgw("meters", "install", str(bad), "--data-dir", str(tmp_path))
    assert refused.returncode == 1
    assert "line 2, column SecondaryAddress" in refused.stderr
    listing = mbusgw("meters", "list", "--data-dir", str(tmp_path))
    assert listing.returncode == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()[1:]] == [
        "12345678",
        "default:p5",
        "23456789",
        "87654321",
    ]


def test_an_oversized_field_is_a_clear_error_on_the_command_line(tmp_path: Path) -> None:
    huge = tmp_path / "huge.csv"
    header = "Position,SecondaryAddress,BaudRate,AddressingMode"
    huge.write_text(f"{header}\n{'x' * 140_000},12345678,2400,secondary\n")
    refused = mbusgw("meters", "install", str(huge), "--data-dir", str(tmp_path))
    assert refused.returncode == 1
    assert "line 2, column Position: longer than 131072 characters" in refused.stderr
    assert "Traceback" not in refused.stderr
