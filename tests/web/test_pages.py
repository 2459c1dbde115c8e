"""Every page renders for an administrator and a read-only user; forms change what they say."""

from __future__ import annotations

import re

from test_api_data import T0
from test_security import csrf_of, sign_in
from webclient import ADMIN, Client, body, csv_upload

from mbusgw.web.pages import TIMING_FIELDS

PAGES = ("/", "/system", "/meters", "/meters?passive=1", "/meters/12345678",
         "/meters/12345678?range=30d", "/search", "/settings/mbus", "/log", "/keys", "/users",
         "/device", "/account", "/reports", "/reports/new", "/settings/reports",
         "/modbus")  # fmt: skip


async def browser_with_meters(app, admin: Client, gateway) -> Client:
    browser = Client(app, None)
    await sign_in(browser, *ADMIN)
    home = (await (await browser.get("/")).get_data()).decode()
    assert "/api/v1/modbus/map.csv" in home  # the register map is a download from the UI
    browser.form_token = csrf_of(home)
    await browser.post("/install", files=csv_upload(), form={"csrf_token": browser.form_token})
    for i in range(10):
        await gateway.store_reading("12345678", T0 + 900 * i, 1000 + i, f"{i}.5")
    return browser


async def test_every_page_renders(app, admin: Client, gateway) -> None:
    browser = await browser_with_meters(app, admin, gateway)
    for url in PAGES:
        response = await browser.get(url)
        html = (await response.get_data()).decode()
        assert response.status_code == 200, (url, html[:500])
        assert "<main>" in html and "</html>" in html
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    meter = (await (await browser.get("/meters/12345678?range=365d")).get_data()).decode()
    assert "No values in this range." in meter  # the values are of 2024: the graph says so
    assert "Heat flat 1" in meter


async def test_read_only_user_sees_but_cannot_change(app, admin: Client, gateway) -> None:
    await browser_with_meters(app, admin, gateway)
    await admin.post(
        "/api/v1/users", json={"name": "viewer", "password": "Viewer123", "role": "read-only"}
    )
    viewer = Client(app, None)
    await sign_in(viewer, "viewer", "Viewer123")
    for url in ("/", "/meters", "/meters/12345678", "/log", "/system", "/settings/mbus"):
        assert (await viewer.get(url)).status_code == 200, url
    for url in ("/keys", "/users"):
        assert (await viewer.get(url)).status_code == 403, url
    home = (await (await viewer.get("/")).get_data()).decode()
    assert "Install meters" not in home
    refused = await viewer.post(
        "/meters/12345678/settings", form={"csrf_token": csrf_of(home), "position": "x"}
    )
    assert refused.status_code == 403


async def test_forms_change_settings(app, admin: Client, gateway) -> None:
    browser = await browser_with_meters(app, admin, gateway)
    token = browser.form_token
    response = await browser.post(
        "/schedule",
        form={"csrf_token": token, "schedule": "cron", "cron": "?1-30 0 * * *", "enabled": "on"},
    )
    assert response.status_code == 303
    assert gateway.settings.reading.schedule == "?1-30 0 * * *"
    bad = await browser.post(
        "/schedule", form={"csrf_token": token, "schedule": "cron", "cron": "99 * * * *"}
    )
    assert "refused" in bad.headers["Location"]
    assert gateway.settings.reading.schedule == "?1-30 0 * * *"
    form = {"csrf_token": token, "multi_telegram": "off", "multi_telegram_limit": "4"}
    for group in ("timing", "multi_telegram_timing"):
        for name, _ in TIMING_FIELDS:
            form[f"{group}.{name}"] = "3"
    assert (await browser.post("/settings/mbus", form=form)).status_code == 303
    assert gateway.settings.mbus.timing.collision_recovery_ms == 3
    assert gateway.settings.mbus.multi_telegram == "off"
    saved = await browser.post(
        "/meters/12345679/settings",
        form={"csrf_token": token, "position": "Heat flat 2b", "baud": "300",
              "multi_telegram": "auto", "multi_telegram_limit": "2"},
    )  # fmt: skip
    assert saved.status_code == 303
    assert body(await admin.get("/api/v1/meters/12345679"))["baud"] == 300
    assert (
        await browser.post("/meters/12345679/read", form={"csrf_token": token})
    ).status_code == 303
    page = (await (await browser.get("/meters/12345679")).get_data()).decode()
    assert "Heat flat 2b" in page


async def test_users_and_keys_pages(app, admin: Client, gateway) -> None:
    browser = await browser_with_meters(app, admin, gateway)
    token = browser.form_token
    await browser.post(
        "/users",
        form={"csrf_token": token, "action": "add", "name": "tech", "password": "Tech2024x",
              "role": "read-only"},
    )  # fmt: skip
    users = (await (await browser.get("/users")).get_data()).decode()
    assert re.search(r"<td>tech</td><td>read-only</td>", users)
    refused = await browser.post(
        "/users",
        form={"csrf_token": token, "action": "add", "name": "weak", "password": "short",
              "role": "admin"},
    )  # fmt: skip
    assert refused.status_code == 400
    await browser.post(
        "/keys",
        form={"csrf_token": token, "action": "add", "key": "00112233445566778899AABBCCDDEEFF",
              "address": "12345678"},
    )  # fmt: skip
    keys = (await (await browser.get("/keys")).get_data()).decode()
    assert "00112233445566778899AABBCCDDEEFF" not in keys
    assert "0" + "*" * 30 + "F" in keys
