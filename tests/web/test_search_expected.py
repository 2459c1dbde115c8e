"""The advanced search's number of meters expected, through the served API and the pages of a
real gateway on a simulated line of four meters: the search stops once the expected meters are
found, and ending with fewer is a warning in the job, the API, the job page and the system log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio
from webrig import SERVED_ADMIN, finished_job, served_gateway, sign_in_over_http

from mbusgw.gateway.settings import InterfaceConfig

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=4)


async def logged(http: httpx.AsyncClient, origin: str, ending: str) -> dict[str, Any]:
    """The system log entry of ``origin`` ending so, once the log's batch is stored."""
    while True:
        log = await http.get(f"/api/v1/log?origin={origin}", auth=SERVED_ADMIN)
        entry = next((e for e in log.json()["entries"] if e["text"].endswith(ending)), None)
        if entry is not None:
            return entry
        await trio.sleep(0.2)


async def test_a_search_stops_once_the_expected_meters_are_found(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, LINE) as (gateway, http):
            wire = gateway.simulators["sim1"].line.stats
            before = wire.requests
            started = await http.post(
                "/api/v1/scans", auth=SERVED_ADMIN, json={"kind": "primary", "expected": 2}
            )
            assert started.status_code == 202, started.text
            assert started.json()["expected"] == 2
            job = await finished_job(http, started.json()["id"])
            requests = wire.requests - before
    assert job["state"] == "done" and job["warning"] is None
    # the gateway installed the simulated meters at start: found again, they stay as they are
    assert job["found"] == 2 and len(job["result"]["already_installed"]) == 2
    assert {k: job["result"][k] for k in ("found", "expected", "installed")} == {
        "found": 2,
        "expected": 2,
        "installed": 0,
    }
    assert "stopped: the 2 expected were found" in job["message"]
    # the meters answer at primary addresses 1-4: the scan stopped after address 2, where a
    # whole scan asks each of the 251 addresses at least once
    assert requests < 20


async def test_fewer_meters_than_expected_is_a_warning_everywhere(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, LINE) as (_gateway, http):
            started = await http.post(
                "/api/v1/scans", auth=SERVED_ADMIN, json={"kind": "secondary", "expected": 6}
            )
            job = await finished_job(http, started.json()["id"])
            warned = await logged(http, "search", "6 meter(s) expected, only 4 found")

            token = await sign_in_over_http(http, *SERVED_ADMIN)
            bad = await http.post(
                "/api/v1/scans", auth=SERVED_ADMIN, json={"kind": "secondary", "expected": -1}
            )
            posted = await http.post(
                "/search", data={"csrf_token": token, "kind": "secondary", "expected": "5"}
            )
            assert posted.status_code == 303
            job_page = posted.headers["location"]
            page_job = await finished_job(http, job_page.split("/jobs/")[1].split("?")[0])
            page = (await http.get(job_page)).text
            listing = (await http.get("/search")).text
    assert job["state"] == "done" and job["found"] == 4 and job["expected"] == 6
    assert job["warning"] == "6 meter(s) expected, only 4 found"
    assert len(job["result"]["already_installed"]) == 4
    assert {k: job["result"][k] for k in ("found", "expected", "installed")} == {
        "found": 4,
        "expected": 6,
        "installed": 0,
    }
    assert warned["level_name"] == "warning" and warned["text"].startswith("search search-")
    assert bad.status_code == 400 and bad.json()["error"]["details"] == {
        "expected": "0 (unknown) to 4096"
    }
    assert page_job["warning"] == "5 meter(s) expected, only 4 found"
    assert 'role="alert" data-field="warning">5 meter(s) expected, only 4 found<' in page
    assert '4</span><span data-field="expected"> of 5 expected</span>' in page
    assert "4 of 5</td>" in listing and "5 meter(s) expected, only 4 found" in listing
