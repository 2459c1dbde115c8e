"""Values, series, logs, jobs, files and reports through the API (validated by the document)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import trio.testing
from openpyxl import load_workbook
from test_security import REPORT_PASSWORD, REPORT_RECEIVER, sign_in
from webclient import ADMIN, Client, body
from webrig import METER_CSV, RigGateway

from mbusgw.web.jsonrpc import METHODS

T0 = int(datetime(2024, 5, 1, tzinfo=UTC).timestamp())


async def installed(admin: Client, gateway: RigGateway, readings: int = 0) -> None:
    response = await admin.post(
        "/api/v1/meters", data=METER_CSV, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200
    for i in range(readings):
        await gateway.store_reading("12345678", T0 + 900 * i, 1000 + i, f"{i}.125")


async def series_id(admin: Client, quantity: str) -> int:
    listing = body(await admin.get("/api/v1/meters/12345678/series"))
    return next(s["id"] for s in listing["series"] if s["quantity"] == quantity)


async def test_series_pages_are_exact_and_complete(admin: Client, gateway: RigGateway) -> None:
    await installed(admin, gateway, readings=25)
    volume = await series_id(admin, "volume")
    url = f"/api/v1/meters/12345678/series/{volume}?since={T0}&limit=10"
    times, values = [], []
    while url:
        page = body(await admin.get(url))
        times += page["times"]
        values += page["values"]
        url = (
            f"/api/v1/meters/12345678/series/{volume}?since={page['next']}&limit=10"
            if page["next"]
            else None
        )
    assert times == [T0 + 900 * i for i in range(25)]
    assert (
        b'"values":[0.125,1.125'
        in (await admin.get(f"/api/v1/meters/12345678/series/{volume}?limit=2")).body_bytes
    )
    assert [str(v) for v in values] == [f"{i}.125" for i in range(25)]
    ranged = body(
        await admin.get(
            f"/api/v1/meters/12345678/series/{volume}"
            f"?since=2024-05-01T01:00:00Z&until=2024-05-01T02:00:00Z"
        )
    )
    assert ranged["times"] == [T0 + 3600 + 900 * i for i in range(4)]


async def test_series_csv(admin: Client, gateway: RigGateway) -> None:
    await installed(admin, gateway, readings=3)
    energy = await series_id(admin, "energy")
    response = await admin.get(f"/api/v1/meters/12345678/series/{energy}.csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.body_bytes.decode())))
    assert rows[0] == ["time", "value", "quantity", "unit"]
    assert rows[1:] == [
        [datetime.fromtimestamp(T0 + 900 * i, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
        + [str(1000 + i), "energy", "kWh"]
        for i in range(3)
    ]


async def test_bad_arguments_are_4xx(admin: Client, gateway: RigGateway) -> None:
    await installed(admin, gateway, readings=1)
    for url, status in (
        ("/api/v1/meters/nope", 404),
        ("/api/v1/meters/12345678/series/999999", 404),
        ("/api/v1/meters/12345678/series/abc", 400),
        ("/api/v1/meters/12345678/series/1?since=yesterday", 400),
        ("/api/v1/meters/12345678/series/1?limit=0", 400),
        ("/api/v1/log?min_level=7", 400),
        ("/api/v1/meters?passive=maybe", 400),
    ):
        response = await admin.get(url)
        assert response.status_code == status, url
        assert body(response)["error"]["code"]
    assert (await admin.patch("/api/v1/meters/12345678", json={"key": "x"})).status_code == 400
    assert (await admin.post("/api/v1/scans", json={"depth": 3})).status_code == 400


async def test_meter_log_and_system_log(admin: Client, gateway: RigGateway) -> None:
    await installed(admin, gateway, readings=4)
    log = body(await admin.get("/api/v1/meters/12345678/log"))
    assert [e["status"] for e in log["entries"]] == ["ok"] * 4
    assert log["entries"][0]["read_at"] > log["entries"][-1]["read_at"]
    gateway.store.log.warning("bus:main", "no answer from 12345679")
    gateway.store.log.info("web", "hello")
    await gateway.writer.flush()
    warnings = body(await admin.get("/api/v1/log?min_level=1"))
    assert [e["text"] for e in warnings["entries"]] == ["no answer from 12345679"]
    exported = await admin.get("/api/v1/log.csv?origin=bus:main")
    assert exported.status_code == 200
    rows = list(csv.reader(io.StringIO(exported.body_bytes.decode())))
    assert rows[0][:3] == ["time", "level", "level_name"]
    assert [r[-1] for r in rows[1:]] == ["no answer from 12345679"]


async def test_live_snapshot_and_jobs(admin: Client, gateway: RigGateway) -> None:
    await installed(admin, gateway)
    live = body(await admin.get("/api/v1/values/live"))
    assert live["meters"] == []
    job = await admin.post("/api/v1/values/read")
    assert job.status_code == 202
    job_id = body(job)["id"]
    await trio.testing.wait_all_tasks_blocked()
    finished = body(await admin.get(f"/api/v1/jobs/{job_id}"))
    assert (finished["state"], finished["found"], finished["progress"]) == ("done", 3, 1.0)
    wireless = await admin.post("/api/v1/scans", json={"kind": "wireless"})
    assert wireless.status_code == 400
    elsewhere = await admin.post("/api/v1/scans", json={"kind": "primary", "interfaces": ["x"]})
    assert body(elsewhere)["error"]["details"] == {"interfaces": "configured: default"}
    assert len(body(await admin.get("/api/v1/jobs"))["jobs"]) == 1
    latest = body(await admin.get("/api/v1/values/latest"))
    assert all(m["values"] for m in latest["meters"] if m["key"] != "default:p5")


async def test_configuration_file_round_trip(admin: Client, gateway: RigGateway) -> None:
    await admin.patch("/api/v1/settings", json={"identity": {"device_name": "Block C"}})
    exported = await admin.get("/api/v1/config")
    text = exported.body_bytes.decode()
    assert 'device_name = "Block C"' in text
    await admin.patch("/api/v1/settings", json={"identity": {"device_name": "other"}})
    restored = await admin.put(
        "/api/v1/config", data=text, headers={"Content-Type": "application/toml"}
    )
    assert restored.status_code == 200
    assert gateway.settings.identity.device_name == "Block C"
    broken = text.replace('device_name = "Block C"', "device_name = 5")
    refused = await admin.put(
        "/api/v1/config", data=broken, headers={"Content-Type": "application/toml"}
    )
    assert refused.status_code == 400
    assert "identity.device_name" in body(refused)["error"]["details"]
    assert gateway.settings.identity.device_name == "Block C"


async def test_configuration_file_leaves_passwords_out_unless_asked(
    app, admin: Client, gateway: RigGateway
) -> None:
    await admin.patch("/api/v1/settings", json={"reports": {"http": REPORT_RECEIVER}})
    plain = (await admin.get("/api/v1/config")).body_bytes.decode()
    assert REPORT_PASSWORD not in plain and 'password = "********"' in plain
    # an import of that file keeps the stored password, and changes the rest
    await admin.patch("/api/v1/settings", json={"reports": {"http": {"username": "other"}}})
    restored = await admin.put(
        "/api/v1/config", data=plain, headers={"Content-Type": "application/toml"}
    )
    assert restored.status_code == 200, restored.body_bytes
    receiver = gateway.settings.reports.http
    assert (receiver.username, receiver.password) == ("gw", REPORT_PASSWORD)
    whole = (await admin.get("/api/v1/config?passwords=true")).body_bytes.decode()
    assert f'password = "{REPORT_PASSWORD}"' in whole
    # a read-only user gets the file without passwords, never with them
    await admin.post(
        "/api/v1/users", json={"name": "viewer", "password": "Viewer123", "role": "read-only"}
    )
    viewer = Client(app, admin.checker)
    viewer.use_basic("viewer", "Viewer123")
    assert (await viewer.get("/api/v1/config")).status_code == 200
    refused = await viewer.get("/api/v1/config?passwords=true")
    assert refused.status_code == 403 and REPORT_PASSWORD not in refused.body_bytes.decode()
    # the device page offers the same download
    browser = Client(app, None)
    await sign_in(browser, *ADMIN)
    device = (await (await browser.get("/device")).get_data()).decode()
    assert 'name="passwords"' in device
    page_file = await (await browser.get("/device/configuration.toml")).get_data()
    assert REPORT_PASSWORD.encode() not in page_file and b'"********"' in page_file
    with_passwords = await (await browser.get("/device/configuration.toml?passwords=1")).get_data()
    assert REPORT_PASSWORD.encode() in with_passwords


async def test_backup_download_and_restore_check(admin: Client, gateway: RigGateway) -> None:
    await installed(admin, gateway, readings=3)
    backup = await admin.get("/api/v1/backup")
    assert backup.status_code == 200
    data = backup.body_bytes
    assert data.startswith(b"MBUSGW-BACKUP")
    assert not list((gateway.startup.data_dir / "transfer").iterdir())
    damaged = data[:-10] + b"0123456789"
    refused = await admin.post(
        "/api/v1/backup", data=damaged, headers={"Content-Type": "application/octet-stream"}
    )
    assert refused.status_code == 400
    assert body(refused)["error"]["code"] == "invalid_backup"
    truncated = await admin.post(
        "/api/v1/backup", data=data[:5000], headers={"Content-Type": "application/octet-stream"}
    )
    assert truncated.status_code == 400
    accepted = await admin.post(
        "/api/v1/backup", data=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert accepted.status_code == 202
    assert gateway.after_stop.action == "restore" and gateway.stopped == 1
    assert gateway.after_stop.backup.read_bytes() == data
    again = await admin.post("/api/v1/device/restart")
    assert again.status_code == 409


async def test_key_file_upload(admin: Client) -> None:
    good = (
        "Address,Key,Manufacturer,DeviceType,Version\n"
        "12345678,000102030405060708090A0B0C0D0E0F,KAM,-1,-1\n"
    )
    response = await admin.post(
        "/api/v1/keys/import?filename=keys.csv", data=good, headers={"Content-Type": "text/csv"}
    )
    assert body(response) == {"added": 1}
    bad = good + "1234,XYZ,KAM,-1,-1\n"
    refused = await admin.post(
        "/api/v1/keys/import?filename=keys.csv", data=bad, headers={"Content-Type": "text/csv"}
    )
    assert refused.status_code == 400
    assert {d["line"] for d in body(refused)["error"]["details"]} == {3}
    assert len(body(await admin.get("/api/v1/keys"))["entries"]) == 1


async def test_installation_report_has_four_tabs(admin: Client, gateway: RigGateway, app) -> None:
    await installed(admin, gateway, readings=2)
    browser = app.test_client()
    response = await browser.get("/install-report.xlsx", headers=admin.headers)
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(await response.get_data()))
    assert book.sheetnames == ["Device settings", "Meters", "Latest readings", "Modbus"]
    meters = list(book["Meters"].values)
    assert meters[0][:3] == ("Key", "Position", "SecondaryAddress")
    assert [row[0] for row in meters[1:]] == ["12345678", "12345679", "default:p5"]
    readings = list(book["Latest readings"].values)
    assert readings[1][:2] == ("12345678", "Heat flat 1")
    assert {row[3] for row in readings[1:] if row[0] == "12345678"} == {"energy", "volume"}
    settings = dict(list(book["Device settings"].values)[1:])
    assert settings["mbus.timing.read_retries"] == 2
    report = await admin.get("/api/v1/meters/settings-report.csv")
    rows = list(csv.reader(io.StringIO(report.body_bytes.decode())))
    assert rows[3][:7] == ["default:p5", "Water cellar", "", "5", "", "2400", "primary"]


async def test_jsonrpc_mirrors_rest(admin: Client, gateway: RigGateway) -> None:
    await installed(admin, gateway, readings=2)

    async def call(method: str, **params) -> dict:
        response = await admin.post(
            "/api/jsonrpc", json={"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
        )
        assert response.status_code == 200
        return body(response)

    rest = body(await admin.get("/api/v1/meters"))
    assert (await call("meters.list"))["result"] == rest
    assert (await call("values.latest"))["result"] == body(await admin.get("/api/v1/values/latest"))
    energy = await series_id(admin, "energy")
    series = await call("values.series", key="12345678", series=energy, since="2024-05-01")
    assert series["result"]["values"] == [1000, 1001]
    missing = await call("meters.get", key="nope")
    assert missing["error"]["code"] == -32000
    assert missing["error"]["data"]["code"] == "not_found"
    wrong = await call("meters.list", passive="yes")
    assert wrong["error"]["code"] == -32602
    assert wrong["error"]["data"]["details"] == {"passive": "must be boolean"}
    unknown = await call("meters.explode")
    assert unknown["error"]["code"] == -32601
    refused = await call("settings.update", changes={"mbus": {"multi_telegram": "always"}})
    assert "mbus.multi_telegram" in refused["error"]["data"]["details"]
    batch = await admin.post(
        "/api/jsonrpc",
        json=[
            {"jsonrpc": "2.0", "id": 1, "method": "device.info"},
            {"jsonrpc": "2.0", "method": "device.status"},
            {"jsonrpc": "2.0", "id": 2, "method": "jobs.list"},
        ],
    )
    assert [a["id"] for a in body(batch)] == [1, 2]
    garbage = await admin.post(
        "/api/jsonrpc", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert body(garbage)["error"]["code"] == -32700
    assert len(METHODS) >= 30


async def test_reports_write_a_formula_like_position_as_text(admin: Client, app) -> None:
    attack = '=HYPERLINK("http://evil.example","x")'
    meter_list = METER_CSV.replace("Heat flat 1", '"' + attack.replace('"', '""') + '"')
    installed = await admin.post(
        "/api/v1/meters", data=meter_list, headers={"Content-Type": "text/csv"}
    )
    assert installed.status_code == 200
    browser = app.test_client()
    response = await browser.get("/install-report.xlsx", headers=admin.headers)
    book = load_workbook(io.BytesIO(await response.get_data()))
    for name in ("Meters", "Latest readings", "Modbus"):
        sheet = book[name]
        column = [c.value for c in sheet[1]].index("Position") + 1
        cell = sheet.cell(row=2, column=column)
        assert (cell.value, cell.data_type) == (attack, "s"), name
    report = await admin.get("/api/v1/meters/settings-report.csv")
    rows = list(csv.reader(io.StringIO(report.body_bytes.decode())))
    assert rows[1][1] == "'" + attack
    assert rows[3][3] == "5"
