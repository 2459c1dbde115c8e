"""Attacks on the served web interface, over real loopback HTTP: what the default account may do
before its first change, what a password change ends, where a login or plain HTTP may send a
browser, and what basic auth remembers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme
from argon2 import PasswordHasher
from webclient import ADMIN
from webrig import RigGateway, csrf_of, free_port

from mbusgw.web.serve import WebService
from mbusgw.web.tls import TlsFiles

CHANGE = {"current_password": "admin", "new_username": ADMIN[0], "new_password": ADMIN[1]}


@pytest.fixture
async def served(gateway: RigGateway, nursery: trio.Nursery) -> AsyncIterator[str]:
    service = WebService(gateway, "127.0.0.1", free_port())
    with trio.fail_after(30):
        await nursery.start(gateway.supervisor.run, [service])
    yield service.urls[0]


async def sign_in(http: httpx.AsyncClient, name: str, password: str, **extra: str) -> Any:
    token = csrf_of((await http.get("/login")).text)
    form = {"username": name, "password": password, "csrf_token": token, **extra}
    return await http.post("/login", data=form)


async def page_csrf(http: httpx.AsyncClient) -> str:
    return csrf_of((await http.get("/account")).text)


# ------------------------------------------------------------------ 1: first login, changes


async def test_before_the_first_change_only_the_change_is_possible(served: str) -> None:
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=served) as browser:
            assert (await sign_in(browser, "admin", "admin")).headers["location"] == "/first-login"
            assert (await browser.get("/account")).headers["location"] == "/first-login"
            csrf = {"X-CSRF-Token": csrf_of((await browser.get("/first-login")).text)}
            minted = await browser.post("/api/v1/me/tokens", json={"label": "x"}, headers=csrf)
            assert minted.status_code == 403
            assert (await browser.get("/api/v1/keys")).status_code == 403
        async with httpx.AsyncClient(base_url=served, auth=("admin", "admin")) as http:
            minted = await http.post("/api/v1/me/tokens", json={"label": "x"})
            assert minted.status_code == 403, minted.text
            assert minted.json()["error"]["code"] == "password_change_required"
            assert (await http.get("/api/v1/keys")).status_code == 403
            assert (await http.get("/api/v1/me")).json()["must_change_password"] is True
            assert (await http.post("/api/v1/me/password", json=CHANGE)).status_code == 200
        async with httpx.AsyncClient(base_url=served, auth=ADMIN) as http:
            assert (await http.get("/api/v1/keys")).status_code == 200


async def test_a_stored_token_of_an_unchanged_account_is_refused(
    gateway: RigGateway, nursery: trio.Nursery
) -> None:
    """A store written before the fix: the default account still must change, yet has a token."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    secret = "s" * 43
    import hashlib

    record = {
        "password_hash": hasher.hash("admin"),
        "role": "admin",
        "must_change": True,
        "generation": 0,
        "tokens": [
            {
                "id": "0123456789ab",
                "digest": hashlib.sha256(secret.encode()).hexdigest(),
                "label": "x",
                "created": "2026-01-01T00:00:00",
            }
        ],
        "created": "2026-01-01T00:00:00",
    }
    await gateway.writer.put_record("users", "admin", record)
    service = WebService(gateway, "127.0.0.1", free_port())
    with trio.fail_after(30):
        await nursery.start(gateway.supervisor.run, [service])
        bearer = {"Authorization": f"Bearer mbgw.0123456789ab.{secret}"}
        async with httpx.AsyncClient(base_url=service.urls[0], headers=bearer) as http:
            refused = await http.get("/api/v1/keys")
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "password_change_required"
        async with httpx.AsyncClient(base_url=service.urls[0], auth=("admin", "admin")) as http:
            assert (await http.post("/api/v1/me/password", json=CHANGE)).status_code == 200
        async with httpx.AsyncClient(base_url=service.urls[0], headers=bearer) as http:
            assert (await http.get("/api/v1/keys")).status_code == 401


async def test_a_password_change_ends_other_sessions_and_every_token(served: str) -> None:
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=served, auth=("admin", "admin")) as http:
            assert (await http.post("/api/v1/me/password", json=CHANGE)).status_code == 200
        async with httpx.AsyncClient(base_url=served, auth=ADMIN) as http:
            token = (await http.post("/api/v1/me/tokens", json={"label": "plc"})).json()["token"]
        machine = httpx.AsyncClient(base_url=served, headers={"Authorization": f"Bearer {token}"})
        other, changer = httpx.AsyncClient(base_url=served), httpx.AsyncClient(base_url=served)
        async with machine, other, changer:
            assert (await machine.get("/api/v1/keys")).status_code == 200
            for browser in (other, changer):
                assert (await sign_in(browser, *ADMIN)).status_code == 303
                assert (await browser.get("/api/v1/me")).status_code == 200
            old_cookie = changer.cookies["mbusgw_session"]
            changed = await changer.post(
                "/api/v1/me/password",
                json={"current_password": ADMIN[1], "new_password": "Changed77"},
                headers={"X-CSRF-Token": await page_csrf(changer)},
            )
            assert changed.status_code == 200, changed.text
            assert changed.json()["tokens"] == []
            # the session that made the change continues, under a fresh id
            assert changer.cookies["mbusgw_session"] != old_cookie
            assert (await changer.get("/api/v1/me")).status_code == 200
            assert (await other.get("/api/v1/me")).status_code == 401
            assert (await machine.get("/api/v1/keys")).status_code == 401
            # the same through the account page's form
            assert (await sign_in(other, ADMIN[0], "Changed77")).status_code == 303
            form = {
                "action": "password",
                "current_password": "Changed77",
                "new_password": "Changed88",
                "repeat_password": "Changed88",
                "csrf_token": await page_csrf(changer),
            }
            assert (await changer.post("/account", data=form)).status_code == 303
            assert (await changer.get("/api/v1/me")).status_code == 200
            assert (await other.get("/api/v1/me")).status_code == 401


# ------------------------------------------------------------------ 4: redirects

HOSTILE_NEXT = (
    "//evil.example",
    "//evil.example/x",
    "/\\evil.example",
    "/\\/evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "/%5Cevil.example",
    "/%09/evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "evil.example",
    "/\x00/evil.example",
    "/\u2028/evil.example",
    "",
)


async def test_login_follows_only_same_site_paths(served: str) -> None:
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=served, auth=("admin", "admin")) as http:
            assert (await http.post("/api/v1/me/password", json=CHANGE)).status_code == 200
        for hostile in HOSTILE_NEXT:
            async with httpx.AsyncClient(base_url=served) as browser:
                answer = await sign_in(browser, *ADMIN, next=hostile)
                assert answer.status_code == 303
                assert answer.headers["location"] == "/", hostile
        async with httpx.AsyncClient(base_url=served) as browser:
            answer = await sign_in(browser, *ADMIN, next="/meters?sort=name")
            assert answer.headers["location"] == "/meters?sort=name"


async def plain_http_with_https_on(
    gateway: RigGateway, nursery: trio.Nursery, files: TlsFiles
) -> tuple[str, int]:
    """Serve with HTTPS on (the certificate installed already): the plain-HTTP URL and the
    HTTPS port."""
    https_port = free_port()
    files.update_settings({"https": True, "https_port": https_port})
    service = WebService(gateway, "127.0.0.1", free_port())
    await nursery.start(gateway.supervisor.run, [service])
    return next(url for url in service.urls if url.startswith("http://")), https_port


async def test_plain_http_goes_to_the_configured_https_host(
    gateway: RigGateway, nursery: trio.Nursery, tmp_path: Path
) -> None:
    files = TlsFiles(tmp_path / "tls")
    files.generate_self_signed("gw.example")
    with trio.fail_after(30):
        plain, https_port = await plain_http_with_https_on(gateway, nursery, files)
        async with httpx.AsyncClient(base_url=plain) as http:
            for host in ("evil.example", "evil.example:80", "[::1]:8080", "127.0.0.1"):
                moved = await http.get("/meters?passive=1", headers={"Host": host})
                assert moved.status_code == 308
                expected = f"https://gw.example:{https_port}/meters?passive=1"
                assert moved.headers["location"] == expected
    assert (files.key_path.stat().st_mode & 0o777) == 0o600
    assert (files.settings_path.stat().st_mode & 0o777) == 0o600
    assert (files.directory.stat().st_mode & 0o777) == 0o700


async def test_plain_http_without_a_usable_certificate_name_is_sent_nowhere(
    gateway: RigGateway, nursery: trio.Nursery, tmp_path: Path
) -> None:
    wildcard = trustme.CA().issue_cert(common_name="*.example")  # no host name to go to
    files = TlsFiles(tmp_path / "tls")
    files.install_pem(wildcard.cert_chain_pems[0].bytes(), wildcard.private_key_pem.bytes())
    with trio.fail_after(30):
        plain, https_port = await plain_http_with_https_on(gateway, nursery, files)
        async with httpx.AsyncClient(base_url=plain) as http:
            answer = await http.get("/meters", headers={"Host": "evil.example"})
    assert answer.status_code == 403 and "location" not in answer.headers
    assert f"use HTTPS on port {https_port}" in answer.text


# ------------------------------------------------------------------ 16: basic auth


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified = 0

    def verify(self, digest: Any, password: Any) -> bool:
        self.verified += 1
        return super().verify(digest, password)


async def test_basic_auth_remembers_a_success_until_the_password_changes(
    gateway: RigGateway, nursery: trio.Nursery
) -> None:
    service = WebService(gateway, "127.0.0.1", free_port())
    hasher = CountingHasher()
    service.app.extensions["mbusgw"].auth.users._hasher = hasher
    with trio.fail_after(60):
        await nursery.start(gateway.supervisor.run, [service])
        base = service.urls[0]
        async with httpx.AsyncClient(base_url=base, auth=("admin", "admin")) as http:
            assert (await http.post("/api/v1/me/password", json=CHANGE)).status_code == 200
        async with httpx.AsyncClient(base_url=base, auth=ADMIN) as http:
            before = hasher.verified
            for _ in range(20):
                assert (await http.get("/api/v1/device")).status_code == 200
            assert hasher.verified - before == 1  # one full check, then remembered
            reader = {"name": "reader", "password": "Reader123", "role": "read-only"}
            assert (await http.post("/api/v1/users", json=reader)).status_code == 201
        async with httpx.AsyncClient(base_url=base, auth=("reader", "Reader123")) as reading:
            assert (await reading.get("/api/v1/device")).status_code == 200
            async with httpx.AsyncClient(base_url=base, auth=ADMIN) as http:
                assert (await http.delete("/api/v1/users/reader")).status_code == 200
            assert (await reading.get("/api/v1/device")).status_code == 401
        async with httpx.AsyncClient(base_url=base, auth=(ADMIN[0], "wrong-Password1")) as bad:
            assert (await bad.get("/api/v1/device")).status_code == 401
        async with httpx.AsyncClient(base_url=base, auth=ADMIN) as http:
            assert (await http.get("/api/v1/device")).status_code == 200
            change = {"current_password": ADMIN[1], "new_password": "Changed77"}
            assert (await http.post("/api/v1/me/password", json=change)).status_code == 200
            assert (await http.get("/api/v1/device")).status_code == 401  # was remembered
        async with httpx.AsyncClient(base_url=base, auth=(ADMIN[0], "Changed77")) as http:
            assert (await http.get("/api/v1/device")).status_code == 200


# ------------------------------------------------------------------ 2: secrets in backups

KEY = "0102030405060708090A0B0C0D0E0F11"
SMTP = {"reports": {"email": {"host": "smtp.example", "username": "gw", "password": "smtp-Pw-77"}}}


async def test_a_backup_through_the_api_carries_secrets_only_with_a_passphrase(
    gateway: RigGateway, served: str, tmp_path: Path
) -> None:
    from mbusgw.gateway.lifecycle import apply_after_stop
    from mbusgw.gateway.store import Store, store_path
    from mbusgw.gateway.store.backup import read_backup_info

    await gateway.update_settings(SMTP)
    await gateway.keys.add(KEY, address="12345678")
    octets = {"Content-Type": "application/octet-stream"}
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=served, auth=("admin", "admin")) as http:
            assert (await http.post("/api/v1/me/password", json=CHANGE)).status_code == 200
        async with httpx.AsyncClient(base_url=served, auth=ADMIN) as http:
            plain = (await http.get("/api/v1/backup")).content
            short = await http.get("/api/v1/backup", headers={"X-Backup-Passphrase": "short"})
            assert short.status_code == 400
            sealed = await http.get(
                "/api/v1/backup", headers={"X-Backup-Passphrase": "Pass-phrase-1"}
            )
            assert sealed.status_code == 200
            for data in (plain, sealed.content):
                assert b"smtp-Pw-77" not in data and KEY.encode() not in data.upper()
            (tmp_path / "sealed.backup").write_bytes(sealed.content)
            assert read_backup_info(tmp_path / "sealed.backup").secrets is not None
            for given, message in ((None, "give it"), ("Wrong-phrase-1", "wrong passphrase")):
                headers = octets | ({"X-Backup-Passphrase": given} if given else {})
                refused = await http.post("/api/v1/backup", content=sealed.content, headers=headers)
                assert refused.status_code == 400 and message in refused.json()["error"]["message"]
                assert gateway.after_stop is None and gateway.stopped == 0
            accepted = await http.post(
                "/api/v1/backup",
                content=sealed.content,
                headers=octets | {"X-Backup-Passphrase": "Pass-phrase-1"},
            )
            assert accepted.status_code == 202
            staged = gateway.after_stop.backup
            assert (staged.stat().st_mode & 0o777) == 0o600
            assert (staged.parent.stat().st_mode & 0o777) == 0o700
        async with httpx.AsyncClient(base_url=served) as browser:
            assert (await sign_in(browser, *ADMIN)).status_code == 303
            device = (await browser.get("/device")).text
            assert 'name="passphrase"' in device
            form = {"csrf_token": csrf_of(device), "passphrase": "Pass-phrase-2"}
            differ = await browser.post("/device/backup", data=form | {"repeat_passphrase": "x"})
            assert differ.status_code == 303 and "differ" in differ.headers["location"]
            for given in ("", "Pass-phrase-2"):
                form.update(passphrase=given, repeat_passphrase=given)
                download = await browser.post("/device/backup", data=form)
                assert download.status_code == 200
                assert b"smtp-Pw-77" not in download.content
                (tmp_path / "page.backup").write_bytes(download.content)
                secrets = read_backup_info(tmp_path / "page.backup").secrets
                assert (secrets is not None) == bool(given)
    assert "Pass-phrase-1" not in repr(gateway.after_stop)
    # what `mbusgw run` does once the gateway has stopped: here into another data directory
    other = tmp_path / "other"
    apply_after_stop(gateway.after_stop, other)
    with Store.open(store_path(other)) as store:
        assert store.stored_settings().reports.email.password == "smtp-Pw-77"
        assert {r.get("key") for r in store.records("keys").values()} >= {KEY}
