"""The REST API in-process; every response is validated against the OpenAPI document."""

from __future__ import annotations

from webclient import body
from webrig import METER_CSV


async def test_openapi_document_is_served_and_valid(anonymous, checker) -> None:
    response = await anonymous.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = body(response)
    assert document["openapi"] == "3.1.0"
    assert "/meters/{key}/series/{series}" in document["paths"]


async def test_openapi_document_is_kept_as_its_text(anonymous, app) -> None:
    """Written once and kept as JSON text (about half the memory of the document's dicts)."""
    first = await anonymous.get("/api/v1/openapi.json")
    again = await anonymous.get("/api/v1/openapi.json")
    assert first.body_bytes == again.body_bytes
    kept = app.extensions["mbusgw"].openapi
    assert isinstance(kept, str) and kept.encode() == first.body_bytes


async def test_api_needs_credentials(anonymous) -> None:
    response = await anonymous.get("/api/v1/meters")
    assert response.status_code == 401
    assert body(response)["error"]["code"] == "unauthorized"


async def test_device_info_and_status(admin) -> None:
    info = body(await admin.get("/api/v1/device"))
    assert info["name"] == "mbusgw"
    status = body(await admin.get("/api/v1/device/status"))
    assert status["meters"]["installed"] == 0


async def test_install_meter_list_and_read(admin, gateway) -> None:
    response = await admin.post(
        "/api/v1/meters", data=METER_CSV, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.body_bytes
    assert body(response)["installed"] == 3
    listing = body(await admin.get("/api/v1/meters"))
    assert [m["key"] for m in listing["meters"]] == ["12345678", "12345679", "default:p5"]
    read = body(await admin.post("/api/v1/meters/12345678/read"))
    assert read["ok"] is True
    meter = body(await admin.get("/api/v1/meters/12345678"))
    values = {v["quantity"]: v["value"] for v in meter["latest"]["values"]}
    assert values == {"energy": 1000, "volume": 12.345}
    latest = body(await admin.get("/api/v1/values/latest"))
    assert len(latest["meters"]) == 3


async def test_bad_meter_list_installs_nothing(admin, gateway) -> None:
    bad = METER_CSV + "Broken,1234,1200,secondary,,\r\n"
    response = await admin.post("/api/v1/meters", data=bad, headers={"Content-Type": "text/csv"})
    assert response.status_code == 400
    error = body(response)["error"]
    assert error["code"] == "invalid_meter_list"
    assert {d["column"] for d in error["details"]} == {"SecondaryAddress", "BaudRate"}
    assert all(d["line"] == 5 for d in error["details"])
    assert list(gateway.meters) == []


async def test_settings_refused_with_every_field(admin, gateway) -> None:
    response = await admin.patch(
        "/api/v1/settings",
        json={"mbus": {"timing": {"read_retries": 99}}, "reading": {"schedule": "61 * * * *"}},
    )
    assert response.status_code == 400
    details = body(response)["error"]["details"]
    assert set(details) == {"mbus.timing.read_retries", "reading.schedule"}
    assert gateway.settings.mbus.timing.read_retries == 2
    ok = await admin.patch("/api/v1/settings", json={"mbus": {"timing": {"read_retries": 4}}})
    assert body(ok)["mbus"]["timing"]["read_retries"] == 4
