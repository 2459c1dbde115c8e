"""Installing meters and keeping their readings, over HTTP to a real gateway on simulated lines:
a garbled meter costs no other meter its reading, meters installed from a list learn what they
are, a search leaves installed meters as they are, a list reaches the line it names, and bad
lists are refused with the row and the column."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import httpx
import trio
from webrig import (
    SERVED_ADMIN,
    OpenApiChecker,
    finished_job,
    served_gateway,
    sign_in_over_http,
)

from mbusgw.gateway.search import SearchRequest
from mbusgw.gateway.settings import InterfaceConfig

HEADER = "Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress,EnhancedAddress"
KEY = "000102030405060708090A0B0C0D0E0F"
FIELD_LIMIT = csv.field_size_limit()


def line(name: str, meters: int) -> InterfaceConfig:
    return InterfaceConfig(name=name, kind="simulator", baud=9600, meters=meters)


async def install(http: httpx.AsyncClient, text: str, query: str = "") -> httpx.Response:
    return await http.post(
        f"/api/v1/meters{query}",
        auth=SERVED_ADMIN,
        content=text.encode(),
        headers={"Content-Type": "text/csv"},
    )


async def meter(http: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await http.get(f"/api/v1/meters/{key}", auth=SERVED_ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_garbled_meter_costs_no_other_meter_its_reading(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, line("sim1", 7)) as (gateway, http):
            sim = gateway.simulators["sim1"].line.meters[0]
            # every answer: an ACK and 79 bytes of noise, over well within the longest frame's
            # time, so each attempt ends as a garble (a line noisy for longer is LineNoisy:
            # tests/gateway/test_gateway.py)
            sim.babble = b"\xe5\x00" * 40
            garbled = sim.identity.id
            started = await http.post("/api/v1/values/read", auth=SERVED_ADMIN)
            assert started.status_code == 202, started.text
            job = await finished_job(http, started.json()["id"])
            logs = {
                m.key: (await http.get(f"/api/v1/meters/{m.key}/log", auth=SERVED_ADMIN)).json()
                for m in gateway.meters
            }
    assert job["state"] == "done", job["message"]
    assert job["message"].startswith(f"6 of 7 meters read, 1 failed ({garbled}: Collision: ")
    newest = {key: log["entries"][0] for key, log in logs.items()}  # this job's reading
    assert [key for key, entry in newest.items() if entry["status"] != "ok"] == [garbled]
    entry = newest[garbled]
    assert entry["status"] == "collision" and entry["error"].startswith("Collision: garbled")
    # The bus names the garble without the bytes; a long text is cut where it is made
    # (tests/gateway/test_reading.py), so the store's bound holds either way.
    assert len(entry["error"].encode()) <= 1000


async def test_meters_installed_from_a_list_learn_what_they_are(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, line("sim1", 2)) as (gateway, http):
            sim = gateway.simulators["sim1"].line.meters[0]
            key = sim.identity.id
            removed = await http.delete(f"/api/v1/meters/{key}", auth=SERVED_ADMIN)
            assert removed.status_code in (200, 204), removed.text
            installed = await install(http, f"{HEADER}\nFlat 1,{key},9600,secondary,,\n")
            assert installed.status_code == 200, installed.text
            before = await meter(http, key)
            refused = await http.put(
                f"/api/v1/meters/{key}/key", auth=SERVED_ADMIN, json={"key": KEY}
            )
            read = await http.post(f"/api/v1/meters/{key}/read", auth=SERVED_ADMIN)
            assert read.json()["ok"], read.text
            after = await meter(http, key)
            recorded = gateway.meters
            again = await http.post(f"/api/v1/meters/{key}/read", auth=SERVED_ADMIN)
            assert again.json()["ok"], again.text
            unchanged = gateway.meters is recorded
            linked = await http.put(
                f"/api/v1/meters/{key}/key", auth=SERVED_ADMIN, json={"key": KEY}
            )
            page = await http.get(f"/meters/{key}", auth=SERVED_ADMIN)
    identity = sim.identity
    assert (before["manufacturer"], before["version"], before["medium"]) == (None, None, None)
    assert refused.status_code == 409
    assert (after["manufacturer"], after["version"], after["medium"]) == (
        identity.manufacturer,
        identity.version,
        identity.medium,
    )
    assert after["position"] == "Flat 1"
    assert unchanged, "a reading that teaches nothing new must not rewrite the meter list"
    assert linked.status_code == 200, linked.text
    assert page.status_code == 200 and f"<dd>{identity.manufacturer}</dd>" in page.text


async def test_a_search_leaves_installed_meters_as_they_are(tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with served_gateway(tmp_path, line("sim1", 4)) as (gateway, http):
            first, second, *rest = [m.key for m in gateway.meters]
            changed = await http.patch(
                f"/api/v1/meters/{first}",
                auth=SERVED_ADMIN,
                json={"position": "Flat 7", "primary_address": 33},
            )
            assert changed.status_code == 200, changed.text
            settled = await meter(http, first)
            await http.delete(f"/api/v1/meters/{second}", auth=SERVED_ADMIN)
            started = await http.post(
                "/api/v1/scans", auth=SERVED_ADMIN, json={"kind": "secondary"}
            )
            web_job = await finished_job(http, started.json()["id"])
            after_web = await meter(http, first)
            readded = await meter(http, second)
            search = await gateway.search(SearchRequest(mode="secondary"))
            after_search = await meter(http, first)
    assert web_job["state"] == "done", web_job["message"]
    assert web_job["result"]["installed"] == 1
    assert sorted(web_job["result"]["already_installed"]) == sorted([first, *rest])
    assert web_job["message"] == "found 4 meter(s), installed 1, 3 already installed"
    kept = ("position", "primary_address", "addressing", "baud", "interface")
    assert settled["position"] == "Flat 7" and settled["primary_address"] == 33
    for after in (after_web, after_search):
        assert {k: after[k] for k in kept} == {k: settled[k] for k in kept}
    assert readded["manufacturer"] is not None
    assert search.state == "done" and search.installed == 0
    assert sorted(search.as_dict()["already_installed"]) == sorted([first, second, *rest])


async def test_a_meter_list_reaches_the_line_it_names(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, line("lineA", 1), line("lineE", 1)) as (_, http):
            on_a = await install(http, f"{HEADER}\nA1,,9600,primary,40,\n", "?interface=lineA")
            on_e = await install(http, f"{HEADER}\nE1,,9600,primary,40,\n", "?interface=lineE")
            by_column = await install(http, f"{HEADER},Interface\nE2,,9600,primary,41,,lineE\n")
            unknown = await install(http, f"{HEADER},Interface\nX1,,9600,primary,42,,lineX\n")
            no_line = await install(http, f"{HEADER}\nX2,,9600,primary,43,\n", "?interface=lineX")
            a40, e40, e41 = [await meter(http, k) for k in ("lineA:p40", "lineE:p40", "lineE:p41")]
            template = (await http.get("/api/v1/meters/template.csv", auth=SERVED_ADMIN)).text
            document = (await http.get("/api/v1/openapi.json")).json()
            listing = (await http.get("/api/v1/meters", auth=SERVED_ADMIN)).json()["meters"]

            token = await sign_in_over_http(http, *SERVED_ADMIN)
            form = (await http.get("/")).text
            posted = await http.post(
                "/install",
                data={"csrf_token": token, "interface": "lineE"},
                files={"file": ("m.csv", f"{HEADER}\nE3,,9600,primary,44,\n", "text/csv")},
            )
            e44 = await meter(http, "lineE:p44")
    checker = OpenApiChecker(document)
    for response in (on_a, on_e, by_column, unknown, no_line):
        request = response.request
        checker.check(
            "POST",
            str(request.url.raw_path, "ascii"),
            response.status_code,
            response.headers["content-type"],
            response.content,
        )
    assert [r.status_code for r in (on_a, on_e, by_column)] == [200, 200, 200]
    assert [m["key"] for m in on_e.json()["meters"]] == ["lineE:p40"]
    assert (a40["position"], a40["interface"]) == ("A1", "lineA")
    assert (e40["position"], e40["interface"]) == ("E1", "lineE")
    assert (e41["position"], e41["interface"]) == ("E2", "lineE")
    assert unknown.status_code == 400 and unknown.json()["error"]["details"] == [
        {
            "line": 2,
            "column": "Interface",
            "message": "'lineX' is not a configured M-Bus line (configured: lineA, lineE)",
        }
    ]
    assert no_line.status_code == 400 and "'lineX'" in no_line.text
    assert not {"lineA:p42", "lineA:p43", "lineX:p42"} & {m["key"] for m in listing}
    assert template.splitlines()[0] == HEADER + ",Interface"
    parameters = document["paths"]["/meters"]["post"]["parameters"]
    assert [p["name"] for p in parameters] == ["interface"]
    assert '<select name="interface">' in form and '<option value="lineE">' in form
    assert posted.status_code == 303, posted.text
    assert (e44["position"], e44["interface"]) == ("E3", "lineE")


async def test_an_enhanced_selection_without_its_address_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, line("sim1", 1)) as (gateway, http):
            before = list(gateway.meters)
            refused = await install(http, f"{HEADER}\nGas,23456789,9600,esecondary,,\n")
            fallback = await install(http, f"{HEADER}\nGas,23456789,9600,esecondary|primary,7,\n")
            unchanged = gateway.meters == before
            accepted = await install(http, f"{HEADER}\nGas,23456789,9600,esecondary,,70012345\n")
    message = "required for esecondary addressing: the meter's 8-digit fabrication number"
    for response in (refused, fallback):
        assert response.status_code == 400
        assert response.json()["error"]["details"] == [
            {"line": 2, "column": "EnhancedAddress", "message": message}
        ]
    assert unchanged
    assert accepted.status_code == 200, accepted.text


async def test_an_oversized_csv_field_is_refused_with_its_row_and_column(tmp_path: Path) -> None:
    huge = "x" * (FIELD_LIMIT + 10)
    with trio.fail_after(120):
        async with served_gateway(tmp_path, line("sim1", 1)) as (gateway, http):
            before = list(gateway.meters)
            meters = await install(http, f"{HEADER}\nok,12345678,9600,secondary,,\n{huge},,,,,\n")
            keys = await http.post(
                "/api/v1/keys/import?filename=keys.csv",
                auth=SERVED_ADMIN,
                content=f"Address,Key\n12345678,{KEY}\n12345679,{huge}\n".encode(),
                headers={"Content-Type": "text/csv"},
            )
            unchanged = gateway.meters == before
            stored_keys = (await http.get("/api/v1/keys", auth=SERVED_ADMIN)).json()["entries"]
    too_long = f"longer than {FIELD_LIMIT} characters"
    assert meters.status_code == 400, meters.text
    assert meters.json()["error"]["details"] == [
        {"line": 3, "column": "Position", "message": too_long}
    ]
    assert keys.status_code == 400, keys.text
    assert keys.json()["error"]["details"] == [{"line": 3, "column": "Key", "message": too_long}]
    assert unchanged and stored_keys == []
