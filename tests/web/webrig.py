"""A gateway assembled from the real parts (store in a temporary directory, live snapshot,
key store in the store, supervisor, meter list rules) for testing the web layer in-process,
and helpers to check every API response against the OpenAPI document."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import trio

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.clock import SystemClock, WallClock
from mbusgw.gateway.events import EventBus
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.key_records import StoreKeyBackend
from mbusgw.gateway.keys import KeyStore
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.login_limit import LoginLimiter
from mbusgw.gateway.meters import (
    Merge,
    Meter,
    apply_capacity,
    install,
    merge_found,
    parse_for_gateway,
)
from mbusgw.gateway.reading import CycleProgress, CycleResult, MeterReading
from mbusgw.gateway.settings import InterfaceConfig, Settings, StartupConfig
from mbusgw.gateway.store import SeriesSpec, Store, StoredReading, StoreWriter, store_path
from mbusgw.gateway.supervisor import Supervisor

HEAT = SeriesSpec(bytes.fromhex("0C06"), "energy", "kWh", "")
VOLUME = SeriesSpec(bytes.fromhex("0C13"), "volume", "m³", "")
FLOW = SeriesSpec(bytes.fromhex("0B3B"), "volume_flow", "m³/h", "")

METER_CSV = (
    "Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress,EnhancedAddress\r\n"
    "Heat flat 1,12345678,2400,secondary,,\r\n"
    "Heat flat 2,12345679,2400,secondary,,\r\n"
    "Water cellar,,2400,primary,5,\r\n"
)


@dataclass
class RigGateway:
    """The real ``Gateway``'s interface over a real store; meters are "read" by storing
    synthetic readings, so the data the tests look at is exact."""

    store: Store
    writer: StoreWriter
    startup: StartupConfig
    clock: WallClock = field(default_factory=SystemClock)
    live: LiveSnapshot = field(default_factory=LiveSnapshot)
    events: EventBus = field(default_factory=EventBus)
    health: dict[str, MeterHealth] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    meters: list[Meter] = field(default_factory=list)
    lines: dict[str, Any] = field(default_factory=lambda: {"default": None})
    wireless: Any = None  # no receivers (the wireless API is tested on a real gateway)
    after_stop: Any = None
    reports: Any = None  # no push-report service in the rig
    login_limiter: LoginLimiter = field(default_factory=LoginLimiter)
    running_northbound: dict[str, Any] = field(default_factory=dict)
    licence: Any = None  # no licence files in the rig (tested on a real gateway)
    service_status: dict[str, Any] = field(default_factory=dict)  # no northbound services
    modbus: Any = None  # nor Modbus, SNMP
    snmp: Any = None
    mqtt: Any = None
    stopped: int = 0

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.store.log.log)
        report = partial(self.store.log.error, "keys")
        self.keys = KeyStore(StoreKeyBackend(self.store, self.writer, report))

    @property
    def settings(self) -> Settings:
        return self.store.settings

    async def install_meter_list(self, text: str, interface: str | None = None) -> list[Meter]:
        new = parse_for_gateway(text, list(self.lines), [], interface)
        self.meters = install(self.meters, new, self.settings.capacity)
        return self.meters

    async def install_found(self, found: Sequence[Meter]) -> Merge:
        merged = merge_found(self.meters, found, self.settings.capacity)
        self.meters = merged.meters
        return merged

    async def update_settings(self, changes: dict[str, Any]) -> Settings:
        settings = await self.writer.update_settings(changes)
        self.meters = apply_capacity(self.meters, settings.capacity)
        return settings

    async def update_meter(self, key: str, **changes: Any) -> Meter:
        index = next(i for i, m in enumerate(self.meters) if m.key == key)
        self.meters[index] = replace(self.meters[index], **changes)
        self.meters = apply_capacity(self.meters, self.settings.capacity)
        return self.meters[index]

    async def remove_meters(self, keys: set[str]) -> None:
        self.meters = [m for m in self.meters if m.key not in keys]

    async def store_reading(self, key: str, at: int, energy: int, volume: str) -> None:
        reading = StoredReading.of(key, at, [(HEAT, energy), (VOLUME, Decimal(volume))])
        await self.writer.put_readings([reading])
        health = self.health.setdefault(key, MeterHealth(key))
        health.record(datetime.fromtimestamp(at, UTC), True, response_ms=120.0)

    async def read_meter(self, key: str) -> MeterReading:
        meter = next(m for m in self.meters if m.key == key)
        now = int(self.clock.now().timestamp())
        await self.store_reading(key, now, 1000, "12.345")
        return MeterReading(meter, datetime.fromtimestamp(now, UTC), True)

    async def read_all(
        self, meters: Sequence[Meter] | None = None, progress: CycleProgress | None = None
    ) -> CycleResult:
        chosen = [m for m in self.meters if m.active] if meters is None else list(meters)
        started = self.clock.now()
        readings = []
        for meter in chosen:
            readings.append(await self.read_meter(meter.key))
            if progress is not None:
                progress(len(readings), len(chosen))
        return CycleResult(started, self.clock.now(), readings)

    def stop(self) -> None:
        self.stopped += 1


async def open_rig(
    nursery: trio.Nursery, tmp_path: Path, clock: WallClock | None = None
) -> RigGateway:
    """A rig over a fresh store; ``clock`` (default: the system's) serves the store and the
    gateway alike."""
    clock = clock or SystemClock()
    store = Store.open(store_path(tmp_path), clock=clock)
    writer = StoreWriter(store, in_thread=False)
    await nursery.start(writer.run)
    startup = StartupConfig(data_dir=tmp_path)
    return RigGateway(store=store, writer=writer, startup=startup, clock=clock)


class OpenApiChecker:
    """Validates responses against the document the app serves."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        jsonschema.Draft202012Validator.check_schema({"$defs": document["components"]["schemas"]})
        self.routes = []
        for path, operations in document["paths"].items():
            pattern = (
                "^/api/v1"
                + "".join(
                    "[^/]+" if part.startswith("{") else part for part in _split_template(path)
                )
                + "$"
            )
            for method, operation in operations.items():
                self.routes.append((method.upper(), path, pattern, operation))
        self.checked = 0

    def operation(self, method: str, url: str) -> tuple[str, dict[str, Any]]:
        import re

        path = url.split("?", 1)[0]
        matches = [
            (template, op)
            for m, template, pattern, op in self.routes
            if m == method and re.match(pattern, path)
        ]
        assert matches, f"{method} {path} is not in the OpenAPI document"
        # a literal path beats a template (/meters/template.csv before /meters/{key})
        matches.sort(key=lambda item: (item[0].count("{"), -len(item[0])))
        return matches[0]

    def check(self, method: str, url: str, status: int, content_type: str, body: bytes) -> None:
        template, operation = self.operation(method, url)
        responses = operation["responses"]
        assert str(status) in responses, f"{method} {template}: status {status} not documented"
        content = responses[str(status)].get("content")
        if content is None:
            assert not body, f"{method} {template}: {status} should have no body"
            return
        media = content_type.split(";")[0].strip()
        assert media in content, f"{method} {template}: {media} not documented for {status}"
        if media == "application/json":
            schema = dict(content[media]["schema"])
            schema["components"] = self.document["components"]
            jsonschema.validate(json.loads(body), schema, cls=jsonschema.Draft202012Validator)
        self.checked += 1


def _split_template(path: str) -> list[str]:
    import re

    return [part for part in re.split(r"(\{[^}]+\})", path) if part]


def free_port() -> int:
    """A loopback port nobody listens on right now (for a served gateway)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SERVED_ADMIN = ("engineer", "Install2024")
QUIET = {"modbus": {"enabled": False}, "reading": {"read_at_start": False, "schedule": "0 0 1 1 *"}}


@asynccontextmanager
async def served_gateway(
    data_dir: Path, *lines: InterfaceConfig
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    """The real gateway on simulated ``lines``, its web service on a loopback port, the first
    login done (``SERVED_ADMIN``) and no scheduled reading or Modbus port; yields the gateway
    and an HTTP client (cookies kept, like a browser's) for its base URL."""
    port = free_port()
    startup = StartupConfig(data_dir, web_host="127.0.0.1", web_port=port, interfaces=lines)
    gateway = Gateway(startup)
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            first = await http.post(
                "/api/v1/me/password",
                auth=("admin", "admin"),
                json={"current_password": "admin", "new_username": SERVED_ADMIN[0]}
                | {"new_password": SERVED_ADMIN[1]},
            )
            assert first.status_code == 200, first.text
            await gateway.update_settings(QUIET)
            try:
                yield gateway, http
            finally:
                gateway.stop()


async def install_flats(http: httpx.AsyncClient, addresses: range) -> None:
    """Meters "Flat N" at the primary addresses ``addresses`` (2400 baud, on the first line),
    installed over HTTP: a site's worth of meters, most of them never answering."""
    header = "Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress,EnhancedAddress\n"
    rows = "".join(f"Flat {a},,2400,primary,{a},\n" for a in addresses)
    installed = await http.post(
        "/api/v1/meters",
        auth=SERVED_ADMIN,
        content=(header + rows).encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert installed.status_code == 200, installed.text


async def finished_job(http: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """A web job (``/api/v1/jobs/{id}``) once it has ended."""
    while True:
        job = (await http.get(f"/api/v1/jobs/{job_id}", auth=SERVED_ADMIN)).json()
        if job["state"] not in ("queued", "running"):
            return job
        await trio.sleep(0.1)


async def sign_in_over_http(http: httpx.AsyncClient, name: str, password: str) -> str:
    """Sign in through the login form; returns the session's CSRF token for form posts."""
    token = csrf_of((await http.get("/login")).text)
    signed_in = await http.post(
        "/login", data={"username": name, "password": password, "csrf_token": token}
    )
    assert signed_in.status_code == 303, signed_in.text
    return csrf_of((await http.get("/account")).text)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


class _FormReader(HTMLParser):
    def __init__(self, action: str | None) -> None:
        super().__init__()
        self.action = action
        self.inside = False
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and (self.action is None or a.get("action", "") == self.action):
            self.inside = a.get("method", "get").lower() == "post"
        if not self.inside or "disabled" in a:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.values[a["name"]] = "on"
            else:
                self.values[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select:
            if "selected" in a or self._select not in self.values:  # else the first is chosen
                self.values[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a.get("name")
            self.values[self._textarea or ""] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_values(html: str, action: str | None = None) -> dict[str, str]:
    """What a browser would post from the page's (first, or ``action``'s) POST form as it is
    shown: text and hidden inputs, checked boxes, selected options, text areas."""
    reader = _FormReader(action)
    reader.feed(html)
    return reader.values


@asynccontextmanager
async def real_gateway(
    data_dir: Path, settings: dict[str, Any], interfaces: Sequence[InterfaceConfig]
) -> AsyncIterator[tuple[Gateway, Any]]:
    """A real ``Gateway`` on ``data_dir`` (``settings`` stored before it starts) and its app,
    in-process; the gateway stops when the block ends."""
    from mbusgw.web.app import create_app

    store = Store.open(store_path(data_dir))
    store.update_settings(settings)
    store.close()
    gateway = Gateway(StartupConfig(data_dir, web_port=0, interfaces=tuple(interfaces)))
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        app = create_app(gateway)
        async with app.test_app():
            yield gateway, app
        gateway.stop()
