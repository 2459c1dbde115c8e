"""``GET /api/v1/meters`` keeps each meter's part of the answer between requests; a change of a
meter's settings, of the Modbus settings, of its health or of its stored values shows at once,
and the answer is always the text of ``list_meters`` written afresh (as JSON-RPC and the pages
do)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from webclient import Client, body
from webrig import HEAT, METER_CSV, VOLUME, RigGateway

from mbusgw.core.jsonout import dumps
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.store import StoredReading
from mbusgw.web.meterlist import _caches
from mbusgw.web.operations import list_meters, meter_fields
from mbusgw.web.values import latest_cache

AT = int(datetime(2026, 12, 7, 1, 0, tzinfo=UTC).timestamp())


async def listed(admin: Client, gateway: RigGateway, query: str = "") -> dict[str, dict]:
    answer = await admin.get("/api/v1/meters" + query)
    assert answer.status_code == 200
    data = body(answer)
    args = dict(part.split("=") for part in query.lstrip("?").split("&") if part)
    fresh = list_meters(
        gateway,
        offset=int(args.get("offset", 0)),
        limit=int(args["limit"]) if "limit" in args else None,
        fields=meter_fields(args.get("fields")),
    )
    assert answer.body_bytes.decode() == dumps(fresh)  # the very same text
    return {m["key"]: m for m in data["meters"]}


async def one(admin: Client, key: str) -> dict:
    answer = await admin.get(f"/api/v1/meters/{key}")
    assert answer.status_code == 200
    return body(answer)


async def test_the_meter_list_follows_settings_health_and_values(
    admin: Client, gateway: RigGateway
) -> None:
    installed = await admin.post(
        "/api/v1/meters", data=METER_CSV, headers={"Content-Type": "text/csv"}
    )
    assert installed.status_code == 200
    first = await listed(admin, gateway)
    assert first["12345678"]["latest"] is None
    assert await listed(admin, gateway) == first  # nothing changed: the same answer

    # a meter's settings: the list shows what the meter itself shows
    changed = await admin.patch("/api/v1/meters/12345678", json={"position": "Heat flat 1a"})
    assert changed.status_code == 200
    meter = await one(admin, "12345678")
    second = await listed(admin, gateway)
    assert second["12345678"] == meter and meter["position"] == "Heat flat 1a"
    assert second["12345679"] == first["12345679"]

    # a reading: the meter's health and latest values change, the others' stay
    await gateway.store_reading("12345679", AT, 1000, "12.345")
    third = await listed(admin, gateway)
    assert third["12345679"] == await one(admin, "12345679")
    assert third["12345679"]["health"]["readings"] == 1
    assert third["12345679"]["latest"]["read_at"] == "2026-12-07T01:00:00+00:00"
    assert third["12345678"] == second["12345678"]
    await gateway.store_reading("12345679", AT + 900, 1001, "12.345")
    later = await listed(admin, gateway)
    assert later["12345679"]["health"]["readings"] == 2
    assert later["12345679"]["latest"]["read_at"] == "2026-12-07T01:15:00+00:00"

    # a failed reading: only the health changes (nothing is stored)
    failed = gateway.health.setdefault("12345678", MeterHealth("12345678"))
    failed.record(datetime.fromtimestamp(AT + 900, UTC), False, error="no reply")
    health = await listed(admin, gateway)
    assert health["12345678"]["health"]["status"] == "failed"
    assert health["12345678"] == await one(admin, "12345678")

    # values stored with no reading accounted (as an import would): only the
    # latest values change
    stored = StoredReading.of("12345678", AT + 1800, [(HEAT, 5), (VOLUME, Decimal("1.5"))])
    await gateway.writer.put_readings([stored])
    values = await listed(admin, gateway)
    assert values["12345678"]["latest"]["read_at"] == "2026-12-07T01:30:00+00:00"
    assert values["12345678"]["health"] == health["12345678"]["health"]

    # the Modbus settings: every meter's flag
    await gateway.update_settings({"modbus": {"meters": {"12345678": {"enabled": False}}}})
    fourth = await listed(admin, gateway)
    assert [m["modbus_enabled"] for m in fourth.values()] == [False, True, True]

    # a page with some fields, then the whole list again: each as written afresh
    page = await listed(admin, gateway, "?offset=1&limit=1&fields=position,state,health")
    assert list(page) == ["12345679"]
    assert set(page["12345679"]) == {"key", "position", "state", "health"}
    assert await listed(admin, gateway, "?fields=state,position,latest") != {}
    assert await listed(admin, gateway) == fourth

    # a removed meter is gone from the list
    removed = await admin.delete("/api/v1/meters/default:p5")
    assert removed.status_code == 200
    assert list(await listed(admin, gateway)) == ["12345678", "12345679"]


async def test_selected_fields_keep_the_identity_the_schema_requires(
    admin: Client, gateway: RigGateway
) -> None:
    """Every answer passes the ``Meter`` schema of the OpenAPI document (the client checks
    it), whichever fields are asked for: key, position and state come always."""
    installed = await admin.post(
        "/api/v1/meters", data=METER_CSV, headers={"Content-Type": "text/csv"}
    )
    assert installed.status_code == 200
    for fields in ("key", "latest", "interface,health", "state"):
        meters = await listed(admin, gateway, f"?fields={fields}")
        wanted = {"key", "position", "state"} | set(fields.split(","))
        assert meters and all(set(m) == wanted for m in meters.values())


async def test_the_whole_list_and_the_latest_values_keep_one_copy_of_each_meters_values(
    admin: Client, gateway: RigGateway
) -> None:
    installed = await admin.post(
        "/api/v1/meters", data=METER_CSV, headers={"Content-Type": "text/csv"}
    )
    assert installed.status_code == 200
    await gateway.store_reading("12345679", AT, 1000, "12.345")
    assert (await admin.get("/api/v1/values/latest")).status_code == 200
    whole = await listed(admin, gateway)
    assert whole["12345679"]["latest"]["read_at"] == "2026-12-07T01:00:00+00:00"
    shared = latest_cache(gateway).per_meter
    assert set(shared) == {"12345679"}
    [(own_texts, _)] = _caches[gateway.store].pages.values()
    assert own_texts.per_meter == {} and own_texts.table is None  # none of its own
    part = _caches[gateway.store].parts["12345679"][-1]  # the meter's part holds the text
    assert any(text is shared["12345679"][0] for text in part)
    # a page of the list keeps the texts of its own meters
    assert list(await listed(admin, gateway, "?offset=1&limit=1")) == ["12345679"]
    page_texts, _ = _caches[gateway.store].pages[(True, 1, 1, None)]
    assert set(page_texts.per_meter) == {"12345679"}
