"""The services for existing M-Bus masters in the web: switched on through the REST API, their
counters after a master's session (checked against the OpenAPI document), the system log's
session lines, and the page's settings form refusing bad input without saving anything."""

from __future__ import annotations

from pathlib import Path

import trio
from test_report_pages import problems
from webrig import (
    SERVED_ADMIN,
    OpenApiChecker,
    form_values,
    served_gateway,
    sign_in_over_http,
)

from mbusgw.core.frame import req_ud2, snd_nke
from mbusgw.gateway.settings import InterfaceConfig
from mbusgw.web.openapi import build_document
from mbusgw.web.routes import ROUTES

LINE = InterfaceConfig(name="a", kind="simulator", baud=9600, meters=2)
VIRTUAL = {"slave": {"virtual": {"enabled": True, "host": "127.0.0.1", "port": 0}}}


def virtual_status(body: dict) -> dict:
    (status,) = [s for s in body["services"] if s["name"] == "virtual-mbus"]
    return status


async def test_counters_log_and_settings_of_the_virtual_mbus(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with served_gateway(tmp_path, LINE) as (gateway, http):
            checker = OpenApiChecker(build_document(ROUTES))  # the routes are known by now
            names = {
                s["name"]
                for s in (await http.get("/api/v1/slave", auth=SERVED_ADMIN)).json()["services"]
            }
            assert names == {
                "virtual-mbus",
                "transparent-mbus-1",
                "transparent-mbus-2",
                "slave-port-1",
                "slave-port-2",
            }
            changed = await http.patch("/api/v1/settings", auth=SERVED_ADMIN, json=VIRTUAL)
            assert changed.status_code == 200, changed.text
            assert not (await gateway.read_all()).failed
            while True:  # restarted with the new settings, the readings loaded
                answer = await http.get("/api/v1/slave", auth=SERVED_ADMIN)
                status = virtual_status(answer.json())
                if status["port"] and status["meters"] == 2:
                    break
                await trio.sleep(0.05)

            meter = gateway.meters[0]
            assert meter.primary_address is not None
            master = await trio.open_tcp_stream("127.0.0.1", status["port"])
            await master.send_all(snd_nke(meter.primary_address))
            assert await master.receive_some(1) == b"\xe5"
            await master.send_all(req_ud2(meter.primary_address, fcb=True))
            got = b""
            while not got.endswith(b"\x16") or len(got) < 20:
                got += await master.receive_some(4096)
            await master.aclose()
            while virtual_status((await http.get("/api/v1/slave", auth=SERVED_ADMIN)).json())[
                "sessions_open"
            ]:
                await trio.sleep(0.05)

            answer = await http.get("/api/v1/slave", auth=SERVED_ADMIN)
            checker.check(
                "GET", "/api/v1/slave", answer.status_code, answer.headers["content-type"],
                answer.content,
            )  # fmt: skip
            status = virtual_status(answer.json())
            assert status["enabled"] is True and status["sessions"] == 1
            assert status["frames_in"] == 2 and status["frames_out"] == 2
            assert status["bytes_in"] == 10 and status["bytes_out"] == 1 + len(got)
            await gateway.writer.flush()  # the system log is written in batches
            log = (await http.get("/api/v1/log", auth=SERVED_ADMIN)).json()
            texts = [entry["text"] for entry in log["entries"] if entry["origin"] == "virtual-mbus"]
            assert any("opened" in text for text in texts)
            assert any("closed: closed by the master" in text for text in texts)

            # bad settings are refused whole: through the API and through the page's form
            before = gateway.settings.slave
            refused = await http.patch(
                "/api/v1/settings",
                auth=SERVED_ADMIN,
                json={"slave": {"virtual": {"validity_s": -1, "port": 10}, "port_1": {"baud": 7}}},
            )
            assert refused.status_code == 400, refused.text
            assert gateway.settings.slave == before
            no_device = {"slave": {"port_1": {"enabled": True, "serves": "virtual"}}}
            refused = await http.patch("/api/v1/settings", auth=SERVED_ADMIN, json=no_device)
            assert refused.status_code == 400 and "slave.port_1.device" in refused.text
            assert gateway.settings.slave == before

            token = await sign_in_over_http(http, *SERVED_ADMIN)
            page = await http.get("/settings/slave")
            assert page.status_code == 200 and "virtual-mbus" in page.text
            shown = form_values(page.text)
            assert shown["virtual.validity_s"] == "86400"
            bad = await http.post(
                "/settings/slave",
                data=shown | {"csrf_token": token, "virtual.activity_timeout_s": "soon"},
            )
            assert bad.status_code == 400 and "virtual.activity_timeout_s" in problems(bad.text)
            assert gateway.settings.slave == before
            saved = await http.post(
                "/settings/slave",
                data=shown | {"csrf_token": token, "virtual.validity_s": "3600"},
            )
            assert saved.status_code == 303, problems(saved.text)
            assert gateway.settings.slave.virtual.validity_s == 3600
