"""Report status, test and on-demand reports, and the Modbus map through the served REST API of a
real gateway on a simulated line; report passwords never come back."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import trio
from gatewaykit import seed_settings
from report_receivers import HttpReceiver, free_port, start_http_receiver

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.settings import SECRET_MASK, InterfaceConfig, StartupConfig

PASSWORD = "s3cret-report-pw"


async def test_reports_and_modbus_map_over_the_api(tmp_path: Path) -> None:
    seed_settings(
        tmp_path,
        {
            "modbus": {"host": "127.0.0.1", "port": 0},
            "reading": {"read_at_start": False, "schedule": "0 0 1 1 *"},
        },
    )
    port = free_port()
    line = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=3)
    startup = StartupConfig(tmp_path, web_host="127.0.0.1", web_port=port, interfaces=(line,))
    receiver = HttpReceiver(basic_auth=("gw", PASSWORD))
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            stop_receiver = await start_http_receiver(nursery, receiver)
            gateway = Gateway(startup)
            await nursery.start(gateway.run)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1") as http:
                first = await http.post(
                    "/me/password",
                    auth=("admin", "admin"),
                    json={
                        "current_password": "admin",
                        "new_username": "tester",
                        "new_password": "Testing123",
                    },
                )
                assert first.status_code == 200
                auth = ("tester", "Testing123")
                report = {
                    "kind": "on_demand",
                    "template": 3101,
                    "http": {
                        "uri": receiver.url,
                        "auth": "basic",
                        "username": "gw",
                        "password": PASSWORD,
                    },
                }
                changed = await http.patch(
                    "/settings", auth=auth, json={"reports": {"reports": {"now": report}}}
                )
                assert changed.status_code == 200, changed.text
                assert PASSWORD not in changed.text
                shown = changed.json()["reports"]["reports"]["now"]["http"]
                assert shown["password"] == SECRET_MASK
                # the settings sent back as shown keep the stored password
                again = await http.patch(
                    "/settings", auth=auth, json={"reports": {"reports": {"now": {"http": shown}}}}
                )
                assert again.status_code == 200
                assert gateway.settings.reports.reports["now"].http.password == PASSWORD

                listing = (await http.get("/reports", auth=auth)).json()["reports"]
                assert [r["name"] for r in listing] == ["now"]
                outcome = (await http.post("/reports/now/run", auth=auth)).json()
                assert outcome["ok"] and outcome["values"] > 0, outcome
                assert len(receiver.requests) == 1
                assert b"#report;now;3101" in receiver.requests[0].body  # the x101 CSV arrived
                status = (await http.get("/reports", auth=auth)).json()["reports"][0]
                assert status["last_success"] is not None and status["last_error"] is None
                missing = await http.post("/reports/nope/test", auth=auth)
                assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
                everything = (await http.get("/settings", auth=auth)).text
                assert PASSWORD not in everything

                mapped = await http.get("/modbus/map.csv", auth=auth)
                assert mapped.status_code == 200
                assert mapped.headers["content-type"].startswith("text/csv")
                rows = list(csv.reader(io.StringIO(mapped.text)))
                assert len(rows) > 3 * 5  # a header, the device block and three meters' values
            gateway.stop()
            stop_receiver.set()
