"""The in-process test client of the web tests and the account they use."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import trio
from webrig import METER_CSV, OpenApiChecker
from werkzeug.datastructures import FileStorage

ADMIN = ("operator", "Meter2024")


class Client:
    """A test client that checks every /api/v1 response against the OpenAPI document."""

    def __init__(self, app: Any, checker: OpenApiChecker | None) -> None:
        self.app = app
        self.http = app.test_client()
        self.checker = checker
        self.headers: dict[str, str] = {}
        self.csrf: str | None = None

    async def request(self, method: str, url: str, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        if self.csrf and method not in ("GET", "HEAD"):
            headers.setdefault("X-CSRF-Token", self.csrf)
        with trio.fail_after(30):
            response = await self.http.open(url, method=method, headers=headers, **kw)
        body = await response.get_data()
        if self.checker and url.startswith("/api/v1/"):
            self.checker.check(method, url, response.status_code, response.content_type or "", body)
        response.body_bytes = body
        return response

    async def get(self, url: str, **kw: Any) -> Any:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> Any:
        return await self.request("POST", url, **kw)

    async def patch(self, url: str, **kw: Any) -> Any:
        return await self.request("PATCH", url, **kw)

    async def put(self, url: str, **kw: Any) -> Any:
        return await self.request("PUT", url, **kw)

    async def delete(self, url: str, **kw: Any) -> Any:
        return await self.request("DELETE", url, **kw)

    def use_basic(self, name: str, password: str) -> None:
        token = base64.b64encode(f"{name}:{password}".encode()).decode()
        self.headers["Authorization"] = f"Basic {token}"

    def use_token(self, token: str) -> None:
        self.headers["Authorization"] = f"Bearer {token}"


def csv_upload(text: str = METER_CSV, name: str = "meters.csv") -> dict[str, FileStorage]:
    return {"file": FileStorage(io.BytesIO(text.encode()), filename=name, content_type="text/csv")}


def body(response: Any) -> Any:
    return json.loads(response.body_bytes)


async def complete_first_login(client: Client) -> None:
    """admin/admin → the account the tests use, through the API."""
    client.use_basic("admin", "admin")
    response = await client.post(
        "/api/v1/me/password",
        json={"current_password": "admin", "new_password": ADMIN[1], "new_username": ADMIN[0]},
    )
    assert response.status_code == 200, response.body_bytes
    client.use_basic(*ADMIN)
