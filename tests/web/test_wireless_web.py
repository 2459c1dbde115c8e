"""The wireless parts of the API, JSON-RPC and pages against a real gateway: simulated sticks
on ptys, the store in a temporary directory, the app in-process (every /api/v1 response checked
against the OpenAPI document). Real time: the simulated meters send every 0.2 s."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from test_security import sign_in
from webclient import ADMIN, Client, body, complete_first_login
from webrig import OpenApiChecker, csrf_of
from werkzeug.datastructures import FileStorage

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.gateway.store import Store, store_path
from mbusgw.web.api_v1 import ROUTES
from mbusgw.web.app import create_app
from mbusgw.web.openapi import build_document

QUIET = {"modbus": {"enabled": False}, "reading": {"schedule": "0 0 1 1 *"}}
RECEIVERS = tuple(
    InterfaceConfig(name=name, kind="simulated_receiver", protocol=stick, meters=4, interval=0.2)
    for name, stick in (("rx1", "im871a"), ("rx2", "amb8465"))
)


def prepare(data_dir: Path, *, used_keys: bool = False) -> None:
    """Quiet settings (no Modbus port, no scheduled reading); with ``used_keys`` a key store
    that has been used, so the simulated meters' keys are not preloaded."""
    store = Store.open(store_path(data_dir))
    try:
        store.update_settings(QUIET)
        if used_keys:
            store.put_record("keys", "state", {"format": 1, "next_id": 2})
    finally:
        store.close()


@asynccontextmanager
async def running(data_dir: Path, first: bool = True) -> AsyncIterator[tuple[Gateway, Client]]:
    """A gateway on ``data_dir`` and an admin API client of its app (``first``: the first
    run, when admin/admin is changed)."""
    gateway = Gateway(StartupConfig(data_dir, web_port=0, interfaces=RECEIVERS))
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        app = create_app(gateway)
        async with app.test_app():
            client = Client(app, OpenApiChecker(build_document(ROUTES)))
            client.app = app
            if first:
                await complete_first_login(client)
            else:
                client.use_basic(*ADMIN)
            yield gateway, client
        gateway.stop()


async def wait_until(check: Callable[[], bool]) -> None:
    while not check():
        await trio.sleep(0.05)


def decoding(gateway: Gateway, key: str) -> bool:
    health = gateway.health.get(key)
    return health is not None and health.status == "ok"


def key_file(rows: list[tuple[str, str, str]]) -> dict[str, FileStorage]:
    text = "Address,Key,Manufacturer,DeviceType,Version\n" + "".join(
        f"{address},{key},{manufacturer},-1,-1\n" for address, key, manufacturer in rows
    )
    return {"file": FileStorage(io.BytesIO(text.encode()), filename="keys.csv")}


async def test_uploaded_keys_persist_across_a_restart_and_decrypt(tmp_path: Path) -> None:
    prepare(tmp_path, used_keys=True)
    secrets: list[str] = []
    with trio.fail_after(90):
        async with running(tmp_path) as (gateway, admin):
            field = gateway.wireless.simulation.field
            rows = [
                (m.id, k.material_for_storage(), m.manufacturer) for m, k in field.installer_keys()
            ]
            secrets = [key for _, key, _ in rows]
            encrypted = [address for address, _, _ in rows]
            await wait_until(lambda: all(gateway.health.get(k) for k in encrypted))
            assert not any(decoding(gateway, k) for k in encrypted)  # missing keys
            upload = await admin.post("/api/v1/keys/import", files=key_file(rows))
            assert body(upload) == {"added": 2}
            await wait_until(lambda: all(decoding(gateway, k) for k in encrypted))
            listing = await admin.get("/api/v1/keys")
            assert len(body(listing)["entries"]) == 2
            assert not any(s in listing.body_bytes.decode().upper() for s in secrets)
        async with running(tmp_path, first=False) as (gateway, admin):
            listing = body(await admin.get("/api/v1/keys"))
            assert sorted(e["address"] for e in listing["entries"]) == sorted(encrypted)
            assert all(e["key"].count("*") == 30 for e in listing["entries"])
            await wait_until(lambda: all(decoding(gateway, k) for k in encrypted))
            rpc = await admin.post(
                "/api/jsonrpc", json={"jsonrpc": "2.0", "id": 1, "method": "keys.list"}
            )
            assert len(body(rpc)["result"]["entries"]) == 2
            config = await admin.get("/api/v1/config")
            assert config.status_code == 200
            everything = config.body_bytes.decode() + rpc.body_bytes.decode()
            assert not any(s in everything.upper() for s in secrets)


async def test_reinstall_wireless_status_and_search_through_the_api(tmp_path: Path) -> None:
    prepare(tmp_path)
    with trio.fail_after(90):
        async with running(tmp_path) as (gateway, admin):
            field = gateway.wireless.simulation.field
            first = next(m for m in gateway.meters if m.interface == "rx1").key
            second = next(m for m in gateway.meters if m.interface == "rx2").key
            await wait_until(lambda: all(decoding(gateway, m.key) for m in gateway.meters))
            await wait_until(lambda: gateway.store.meter(first) is not None)  # stored
            status = body(await admin.get("/api/v1/wireless"))
            assert [r["name"] for r in status["receivers"]] == ["rx1", "rx2"]
            assert all(r["state"] == "listening" for r in status["receivers"])
            heard = {h["key"]: h["installed"] for h in status["heard"]}
            assert sorted(k for k, installed in heard.items() if not installed) == [
                m.identity.id for m in field.meters if not m.installed
            ]
            meter = body(await admin.get(f"/api/v1/meters/{first}"))
            assert meter["wireless"] is True and meter["interface"] == "rx1"
            assert meter["latest"]["values"]  # stored from its telegrams
            read = await admin.post(f"/api/v1/meters/{first}/read")
            assert read.status_code == 409

            for key, to, away in ((first, "rx2", "rx1"), (second, "rx1", "rx2")):
                field.set_level(key, to, -45.0)
                field.set_level(key, away, -95.0)
            await wait_until(lambda: heard_best(gateway, first, "rx2"))
            await wait_until(lambda: heard_best(gateway, second, "rx1"))
            one = body(await admin.post(f"/api/v1/meters/reinstall?meter={first}"))
            assert [(m["meter"], m["old"], m["new"]) for m in one["moved"]] == [
                (first, "rx1", "rx2")
            ]
            assert one["meters"] == 1
            rpc = await admin.post(
                "/api/jsonrpc", json={"jsonrpc": "2.0", "id": 7, "method": "meters.reinstall"}
            )
            moved = body(rpc)["result"]["moved"]
            assert [(m["meter"], m["new"]) for m in moved] == [(second, "rx1")]
            assert gateway.meter(second).interface == "rx1"
            unknown = await admin.post("/api/v1/meters/reinstall?meter=99999999")
            assert unknown.status_code == 404

            await gateway.remove_meters({first})
            job = body(
                await admin.post("/api/v1/scans", json={"kind": "wireless", "duration_s": 1})
            )
            assert job["kind"] == "scan_wireless"
            while job["state"] in ("queued", "running"):
                await trio.sleep(0.1)
                job = body(await admin.get(f"/api/v1/jobs/{job['id']}"))
            assert job["state"] == "done", job
            assert job["result"]["installed"] == 2  # the removed meter and the neighbour's
            assert gateway.meter(first).interface == "rx2"
            too_long = await admin.post("/api/v1/scans", json={"kind": "wireless", "duration_s": 0})
            assert too_long.status_code == 400


def heard_best(gateway: Gateway, key: str, receiver: str) -> bool:
    found = [m for m in gateway.wireless.service.heard_meters() if m.id == key]
    return bool(found) and gateway.wireless.best_for(found[0]) == receiver


async def test_meters_and_wireless_pages_reinstall_with_a_form(tmp_path: Path) -> None:
    prepare(tmp_path)
    with trio.fail_after(90):
        async with running(tmp_path) as (gateway, admin):
            browser = Client(admin.app, None)
            await sign_in(browser, *ADMIN)
            await wait_until(lambda: len(gateway.wireless.heard()) == 5)
            meters = (await (await browser.get("/meters")).get_data()).decode()
            assert "Re-install wireless meters" in meters and "wireless, heard by rx1" in meters
            token = csrf_of(meters)
            wireless = (await (await browser.get("/wireless")).get_data()).decode()
            assert "heard, not installed" in wireless and "listening" in wireless
            key = gateway.meters[0].key
            page = (await (await browser.get(f"/meters/{key}")).get_data()).decode()
            assert "Re-install (strongest receiver)" in page and "Read now" not in page
            for wired in ("Baud rate", "telegrams per reading", "Follow-up telegrams", "Retries"):
                assert wired not in page, wired  # wired words stay off a wireless meter
            refused = await browser.post("/meters/reinstall", form={})
            assert refused.status_code == 403  # no CSRF token
            done = await browser.post("/meters/reinstall", form={"csrf_token": token})
            assert done.status_code == 303
            assert "Re-install" in done.headers["Location"]
            await gateway.writer.flush()
            texts = [entry.text for entry in gateway.store.system_log()]
            assert any(text.startswith("re-install: 0 of 4 wireless") for text in texts)
