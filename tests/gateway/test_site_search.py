"""The one search of the wired lines on simulated lines at 38 400 baud: every line scanned at
once, each meter installed on its own line as it is found, one overall progress plus a view per
line, the expected count ending every line, and a cancelled search keeping what it found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.search import SearchJob, SearchRequest
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig

BAUD = 38400


def lines(count: int, meters: int) -> tuple[InterfaceConfig, ...]:
    return tuple(
        InterfaceConfig(name=f"line{n}", kind="simulator", baud=BAUD, meters=meters)
        for n in range(1, count + 1)
    )


@asynccontextmanager
async def search_gateway(tmp_path: Path, count: int, meters: int) -> AsyncIterator[Gateway]:
    """A gateway on ``count`` simulated lines with nothing installed (no reading)."""
    startup = StartupConfig(tmp_path, interfaces=lines(count, meters))
    gateway = Gateway(startup, background=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        try:
            yield gateway
        finally:
            gateway.stop()


def simulated(gateway: Gateway) -> dict[str, str]:
    """Each simulated meter's ID → the line it is on."""
    return {
        meter.identity.id: name
        for name, sim in gateway.simulators.items()
        for meter in sim.line.meters
    }


async def until(condition: object, job: SearchJob) -> None:
    while not condition() and job.running:  # type: ignore[operator]
        await trio.sleep(0.01)


async def test_eight_lines_are_searched_at_once_and_installed_on_their_lines(
    tmp_path: Path,
) -> None:
    with trio.fail_after(120):
        async with search_gateway(tmp_path, 8, 3) as gateway:
            order: list[str] = []  # the line of every progress report, in order
            job = gateway.start_search(SearchRequest("secondary", hex_digits=True, expected=24))
            assert [line["state"] for line in job.as_dict()["lines"]] == ["waiting"] * 8
            installed_while_running = 0
            while job.running:
                order += [name for name, line in job.lines.items() if line.scan is not None]
                if job.installed and not installed_while_running:
                    installed_while_running = len(gateway.meters)
                await trio.sleep(0.01)
            where = simulated(gateway)
            state = job.as_dict()
    assert job.state == "done", job.error
    assert job.warning is None and "stopped: the 24 expected were found" in job.message()
    # every meter installed, each on the line it answered on
    assert {m.key: m.interface for m in gateway.meters} == where
    assert job.installed == 24 and installed_while_running > 0
    # the lines ran side by side: every line reported before the first one finished
    assert set(order[: len(order) // 2]) == set(where.values())
    assert state["done"] == 1.0 and state["found"] == 24 and len(state["lines"]) == 8
    for line in state["lines"]:
        assert line["found"] == 3 and line["baud"] == BAUD and line["state"] == "done"


async def test_the_expected_count_ends_every_line(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with search_gateway(tmp_path, 3, 4) as gateway:
            job = await gateway.search(SearchRequest("secondary", hex_digits=True, expected=2))
    # a probe the other lines had in flight when the second meter came may add one each
    assert job.state == "done" and 2 <= len(job.found) <= 2 + 2 and job.warning is None
    assert len(gateway.meters) == len(job.found)
    # no line went on to settle its whole ID space once two meters were found
    assert all(line.scan is not None and line.scan.done < 1 for line in job.lines.values())


async def test_a_cancelled_search_installs_what_it_had_found(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with search_gateway(tmp_path, 2, 6) as gateway:
            job = gateway.start_search(SearchRequest("primary"))
            # one search per line at a time
            with pytest.raises(ValueError, match=f"^{job.id} is searching line2 already$"):
                gateway.start_search(SearchRequest("secondary", interfaces=("line2",)))
            busy = await gateway.search(SearchRequest("secondary", interfaces=("line1",)))
            await until(lambda: len(job.found) >= 3, job)
            gateway.cancel_search(job.id)
            await job.done_event.wait()
            where = simulated(gateway)
    assert job.state == "cancelled" and job.error is None
    assert busy.state == "failed" and busy.error == f"{job.id} is searching line1 already"
    found = {f.identity.id for f in job.found}
    assert 3 <= len(found) < 12
    assert {m.key: m.interface for m in gateway.meters} == {key: where[key] for key in found}
    assert job.as_dict()["installed"] == len(found) and "(cancelled)" in job.message()
    assert all(line["state"] == "stopped" for line in job.as_dict()["lines"])


async def test_a_search_told_not_to_install_keeps_what_it_found_for_later(
    tmp_path: Path,
) -> None:
    with trio.fail_after(120):
        async with search_gateway(tmp_path, 2, 3) as gateway:
            job = gateway.start_search(SearchRequest("primary", install=False))
            await until(lambda: len(job.found) >= 2, job)
            gateway.cancel_search(job.id)
            await job.done_event.wait()
            assert gateway.meters == [] and job.state == "cancelled"
            kept = job.result()["not_installed"]
            assert len(kept) == len(job.found) >= 2
            await gateway.install_search(job.id)
            installed = sorted(m.key for m in gateway.meters)
    assert installed == sorted(kept)
    assert job.result()["not_installed"] == [] and job.installed == len(kept)
