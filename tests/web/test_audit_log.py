"""The system log records the web's use: sign-ins (refused ones too) with the client's address,
account and role changes, jobs started and finished, and settings changes by key, never a
secret's value. A real gateway (simulated line), the app in-process."""

from __future__ import annotations

from pathlib import Path

import trio
from test_security import csrf_of
from webclient import ADMIN, Client, body, complete_first_login
from webrig import real_gateway

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.settings import InterfaceConfig
from mbusgw.gateway.settings_keys import setting_keys

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=2)
QUIET = {"modbus": {"enabled": False}, "reading": {"schedule": "0 0 1 1 *"}}
SECRET = "Hush-9d3f-never-logged"


def texts(gateway: Gateway) -> list[str]:
    return [f"{e.origin}: {e.text}" for e in gateway.store.system_log()]


def test_setting_keys_are_paths_without_values() -> None:
    change = {
        "reading": {"schedule": "x", "enabled": True},
        "reports": {"http": {"password": SECRET}},
    }
    assert setting_keys(change) == ["reading.schedule", "reading.enabled", "reports.http.password"]
    assert len(setting_keys({f"k{i}": 1 for i in range(30)})) == 21  # 20 and "…"


async def test_sign_ins_accounts_jobs_and_settings_are_logged(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with real_gateway(tmp_path, QUIET, (LINE,)) as (gateway, app):
            admin = Client(app, None)
            await complete_first_login(admin)
            browser = Client(app, None)
            page = (await (await browser.get("/login")).get_data()).decode()
            form = {"csrf_token": csrf_of(page), "username": ADMIN[0], "password": "wrong"}
            assert (await browser.post("/login", form=form)).status_code == 401
            form["password"] = ADMIN[1]
            assert (await browser.post("/login", form=form)).status_code == 303
            add = {"name": "viewer", "password": "Viewer123", "role": "read-only"}
            assert (await admin.post("/api/v1/users", json=add)).status_code in (200, 201)
            await admin.patch("/api/v1/users/viewer", json={"role": "admin"})
            await admin.patch("/api/v1/users/viewer", json={"password": SECRET + "1a"})
            await admin.delete("/api/v1/users/viewer")
            change = {"reports": {"http": {"uri": "http://127.0.0.1:9/in", "auth": "basic",
                                           "username": "u", "password": SECRET}}}  # fmt: skip
            assert (await admin.patch("/api/v1/settings", json=change)).status_code == 200
            job = body(await admin.post("/api/v1/values/read"))
            while body(await admin.get(f"/api/v1/jobs/{job['id']}"))["state"] == "running":
                await trio.sleep(0.05)
            await gateway.writer.flush()
            log = texts(gateway)
    joined = "\n".join(log)
    assert SECRET not in joined
    assert f"access: sign-in refused for '{ADMIN[0]}' from " in joined
    assert f"access: {ADMIN[0]} signed in from " in joined
    assert "access: first sign-in: account admin is now " in joined
    assert f"access: account viewer added with the role read-only by {ADMIN[0]} from " in joined
    assert "access: account viewer: role read-only changed to admin by " in joined
    assert "access: account viewer: password changed, its API tokens revoked by " in joined
    assert "access: account viewer deleted by " in joined
    assert ("settings: changed: reports.http.uri, reports.http.auth, reports.http.username, "
            "reports.http.password") in joined  # fmt: skip
    assert f"web: job {job['id']} started: Reading all meters by {ADMIN[0]} from " in joined
    assert f"web: job {job['id']} done: 2 of 2 meters read" in joined
