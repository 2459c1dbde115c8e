"""The web's search jobs run the gateway's one search (through the façade) over real HTTP: both
lines at once with a line-by-line view on the API and the job page, and a cancelled search that
was told not to install keeps what it found and offers it on the job page."""

from __future__ import annotations

from pathlib import Path

import trio
from webrig import SERVED_ADMIN, finished_job, served_gateway, sign_in_over_http

from mbusgw.gateway.settings import InterfaceConfig

LINES = tuple(
    InterfaceConfig(name=name, kind="simulator", baud=38400, meters=3) for name in ("a", "b")
)


async def test_a_search_job_shows_each_line_and_installs_on_it(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, *LINES) as (gateway, http):
            where = {m.key: m.interface for m in gateway.meters}  # installed at start
            await gateway.remove_meters(set(where))
            started = await http.post(
                "/api/v1/scans", auth=SERVED_ADMIN, json={"kind": "primary", "expected": 6}
            )
            job = await finished_job(http, started.json()["id"])
            listing = (await http.get("/api/v1/meters?fields=interface", auth=SERVED_ADMIN)).json()
            await sign_in_over_http(http, *SERVED_ADMIN)
            page = (await http.get(f"/jobs/{job['id']}")).text
    assert job["state"] == "done" and job["progress"] == 1.0 and job["warning"] is None
    assert job["message"] == "found 6 meter(s), installed 6 (stopped: the 6 expected were found)"
    assert [(line["interface"], line["found"]) for line in job["lines"]] == [("a", 3), ("b", 3)]
    assert {m["key"]: m["interface"] for m in listing["meters"]} == where
    assert 'data-line="a"' in page and 'data-line="b"' in page


async def test_a_cancelled_search_keeps_what_it_found_and_offers_it(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, *LINES) as (gateway, http):
            await gateway.remove_meters({m.key for m in gateway.meters})
            started = await http.post(
                "/api/v1/scans", auth=SERVED_ADMIN, json={"kind": "primary", "install": False}
            )
            job_id = started.json()["id"]
            while True:
                running = (await http.get(f"/api/v1/jobs/{job_id}", auth=SERVED_ADMIN)).json()
                if running["found"] >= 2:
                    break
                await trio.sleep(0.05)
            other = await http.post(
                "/api/v1/scans", auth=SERVED_ADMIN, json={"kind": "secondary", "interfaces": ["b"]}
            )
            cancelled = await http.delete(f"/api/v1/jobs/{job_id}", auth=SERVED_ADMIN)
            assert cancelled.status_code == 200, cancelled.text
            job = await finished_job(http, job_id)
            nothing_yet = list(gateway.meters)
            token = await sign_in_over_http(http, *SERVED_ADMIN)
            page = (await http.get(f"/jobs/{job_id}")).text
            posted = await http.post(f"/jobs/{job_id}/install", data={"csrf_token": token})
            after = (await http.get(f"/api/v1/jobs/{job_id}", auth=SERVED_ADMIN)).json()
            keys = sorted(m.key for m in gateway.meters)
    kept = job["result"]["not_installed"]
    assert other.status_code == 409 and "is searching b already" in other.text
    assert job["state"] == "cancelled" and nothing_yet == []
    assert len(kept) == job["found"] >= 2
    assert all(line["state"] == "stopped" for line in job["lines"])
    assert "Install the meters found" in page and ", ".join(kept) in page
    assert posted.status_code == 303
    assert keys == sorted(kept) and after["result"]["not_installed"] == []
    assert after["result"]["installed"] == len(kept)
