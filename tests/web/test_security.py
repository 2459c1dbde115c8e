"""Accounts, sessions, CSRF, rate limits and secrets."""

from __future__ import annotations

import logging

import pytest
from webclient import ADMIN, Client, body, complete_first_login, csv_upload
from webrig import METER_CSV, csrf_of

KEY = "000102030405060708090A0B0C0D0E0F"
REPORT_PASSWORD = "report-Secret-42"
REPORT_RECEIVER = {
    "uri": "http://127.0.0.1:9/reports",
    "auth": "basic",
    "username": "gw",
    "password": REPORT_PASSWORD,
}


async def sign_in(client: Client, name: str, password: str) -> object:
    page = await client.get("/login")
    token = csrf_of((await page.get_data()).decode())
    return await client.post(
        "/login", form={"username": name, "password": password, "csrf_token": token}
    )


async def test_default_account_must_change_first(anonymous: Client) -> None:
    anonymous.use_basic("admin", "admin")
    response = await anonymous.get("/api/v1/meters")
    assert response.status_code == 403
    assert body(response)["error"]["code"] == "password_change_required"


async def test_admin_admin_stops_working_after_the_change(anonymous: Client, app) -> None:
    await complete_first_login(anonymous)
    assert (await anonymous.get("/api/v1/meters")).status_code == 200
    again = Client(app, anonymous.checker)
    again.use_basic("admin", "admin")
    assert (await again.get("/api/v1/meters")).status_code == 401
    browser = Client(app, None)
    response = await sign_in(browser, "admin", "admin")
    assert response.status_code == 401
    assert (await sign_in(browser, *ADMIN)).status_code == 303


async def test_first_login_rules(anonymous: Client) -> None:
    anonymous.use_basic("admin", "admin")
    for name, password, field in (
        ("admin", "Meter2024", "username"),
        ("operator", "short1", "password"),
        ("operator", "lettersonly", "password"),
        ("operator", "12345678", "password"),
    ):
        response = await anonymous.post(
            "/api/v1/me/password",
            json={"current_password": "admin", "new_password": password, "new_username": name},
        )
        assert response.status_code == 400
        assert field in body(response)["error"]["details"]
    assert (await anonymous.get("/api/v1/meters")).status_code == 403


async def test_browser_first_login_flow(app) -> None:
    browser = Client(app, None)
    response = await sign_in(browser, "admin", "admin")
    assert response.headers["Location"].endswith("/first-login")
    page = await browser.get("/")
    assert page.status_code == 302 and page.headers["Location"].endswith("/first-login")
    form = (await (await browser.get("/first-login")).get_data()).decode()
    response = await browser.post(
        "/first-login",
        form={
            "csrf_token": csrf_of(form),
            "new_username": "fieldeng",
            "new_password": "Install99",
            "repeat_password": "Install99",
        },
    )
    assert response.status_code == 303
    home = await browser.get("/")
    assert home.status_code == 200
    assert "Installation" in (await home.get_data()).decode()


async def test_form_posts_without_csrf_are_refused(admin: Client, app) -> None:
    browser = Client(app, None)
    await sign_in(browser, *ADMIN)
    home = (await (await browser.get("/")).get_data()).decode()
    refused = await browser.post("/install", files=csv_upload(), form={})
    assert refused.status_code == 403
    assert "security token" in (await refused.get_data()).decode()
    assert list(app.extensions["mbusgw"].gateway.meters) == []
    wrong = await browser.post("/install", files=csv_upload(), form={"csrf_token": "x" * 43})
    assert wrong.status_code == 403
    accepted = await browser.post(
        "/install", files=csv_upload(), form={"csrf_token": csrf_of(home)}
    )
    assert accepted.status_code == 303
    assert len(app.extensions["mbusgw"].gateway.meters) == 3
    # a session-authenticated API call needs the token too
    api = await browser.patch("/api/v1/settings", json={"log": {"min_level": 1}})
    assert api.status_code == 403
    browser.csrf = csrf_of(home)
    assert (
        await browser.patch("/api/v1/settings", json={"log": {"min_level": 1}})
    ).status_code == 200


async def test_login_without_csrf_refused(app) -> None:
    browser = Client(app, None)
    response = await browser.post("/login", form={"username": "admin", "password": "admin"})
    assert response.status_code == 403


async def test_login_rate_limit(app) -> None:
    browser = Client(app, None)
    for _ in range(5):
        assert (await sign_in(browser, "admin", "wrong-password1")).status_code == 401
    limited = await sign_in(browser, "admin", "admin")
    assert limited.status_code == 429
    api = Client(app, None)
    api.use_basic("admin", "admin")
    response = await api.get("/api/v1/meters")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0


async def test_read_only_role(admin: Client, app) -> None:
    created = await admin.post(
        "/api/v1/users", json={"name": "viewer", "password": "Viewer123", "role": "read-only"}
    )
    assert created.status_code == 201
    viewer = Client(app, admin.checker)
    viewer.use_basic("viewer", "Viewer123")
    assert (await viewer.get("/api/v1/meters")).status_code == 200
    refused = await viewer.post(
        "/api/v1/meters", data=METER_CSV, headers={"Content-Type": "text/csv"}
    )
    assert refused.status_code == 403
    assert (await viewer.get("/api/v1/users")).status_code == 403
    assert (await viewer.get("/api/v1/keys")).status_code == 403
    own = await viewer.post(
        "/api/v1/me/password", json={"current_password": "Viewer123", "new_password": "Viewer456"}
    )
    assert own.status_code == 200


async def test_password_change_ends_sessions(admin: Client, app) -> None:
    browser = Client(app, None)
    await sign_in(browser, *ADMIN)
    assert (await browser.get("/api/v1/me")).status_code == 200
    response = await admin.post(
        "/api/v1/me/password", json={"current_password": ADMIN[1], "new_password": "Changed77"}
    )
    assert response.status_code == 200
    assert (await browser.get("/api/v1/me")).status_code == 401


async def test_tokens_can_be_revoked(admin: Client, app) -> None:
    token = body(await admin.post("/api/v1/me/tokens", json={"label": "plc"}))["token"]
    machine = Client(app, admin.checker)
    machine.use_token(token)
    assert (await machine.get("/api/v1/values/latest")).status_code == 200
    token_id = token.split(".")[1]
    assert (await admin.delete(f"/api/v1/me/tokens/{token_id}")).status_code == 200
    assert (await machine.get("/api/v1/values/latest")).status_code == 401
    machine.use_token(token[:-2] + "xx")
    assert (await machine.get("/api/v1/values/latest")).status_code == 401


async def test_last_admin_cannot_be_removed(admin: Client) -> None:
    response = await admin.delete(f"/api/v1/users/{ADMIN[0]}")
    assert response.status_code == 409
    demote = await admin.patch(f"/api/v1/users/{ADMIN[0]}", json={"role": "read-only"})
    assert demote.status_code == 409


async def test_secrets_never_in_responses_or_logs(
    admin: Client, app, gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await admin.post("/api/v1/meters", data=METER_CSV, headers={"Content-Type": "text/csv"})
    await admin.post("/api/v1/keys", json={"key": KEY, "address": "12345678"})
    unread = await admin.put("/api/v1/meters/12345679/key", json={"key": KEY})
    assert unread.status_code == 409
    await admin.post(
        "/api/v1/users", json={"name": "second", "password": "Second123", "role": "admin"}
    )
    await admin.patch("/api/v1/settings", json={"reports": {"http": REPORT_RECEIVER}})
    responses = []
    for url in (
        "/api/v1/keys",
        "/api/v1/users",
        "/api/v1/me",
        "/api/v1/settings",
        "/api/v1/meters",
        "/api/v1/config",
        "/api/v1/log?limit=10000",
        "/api/v1/log.csv",
    ):
        response = await admin.get(url)
        assert response.status_code == 200, url
        responses.append(response.body_bytes.decode())
    browser = Client(app, None)
    await sign_in(browser, *ADMIN)
    for url in ("/keys", "/users", "/account", "/device", "/log", "/device/configuration.toml"):
        responses.append((await (await browser.get(url)).get_data()).decode())
    await gateway.writer.flush()
    stored_log = "\n".join(e.text for e in gateway.store.system_log())
    everything = "\n".join(responses) + stored_log + caplog.text
    for secret in (KEY, KEY.lower(), ADMIN[1], "Second123", "$argon2", REPORT_PASSWORD):
        assert secret not in everything, secret
    masked = body(await admin.get("/api/v1/keys"))["entries"][0]["key"]
    assert masked == "0" + "*" * 30 + "F"
