"""A gateway assembled from the real parts (store in a temporary directory, live snapshot,
key store, supervisor, meter list rules) for testing the web layer in-process, and helpers to
check every API response against the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import trio

from mbusgw.gateway.clock import SystemClock
from mbusgw.gateway.events import EventBus
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.keys import KeyStore
from mbusgw.gateway.live import LiveSnapshot
from mbusgw.gateway.meters import Meter, apply_capacity, install, parse_meter_list
from mbusgw.gateway.settings import Settings
from mbusgw.gateway.store import Reading, SeriesSpec, Store, StoreWriter, store_path
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
class Job:
    id: str
    kind: str
    state: str = "running"
    progress: float = 0.0
    found: int = 0
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": self.progress,
            "found": self.found,
            "message": self.message,
            "started": None,
            "finished": None,
            "result": None,
        }


@dataclass
class RigGateway:
    """The web layer's view of a gateway; meters are "read" by storing synthetic readings."""

    store: Store
    writer: StoreWriter
    data_dir: Path
    clock: SystemClock = field(default_factory=SystemClock)
    live: LiveSnapshot = field(default_factory=LiveSnapshot)
    events: EventBus = field(default_factory=EventBus)
    health: dict[str, MeterHealth] = field(default_factory=dict)
    keys: KeyStore = field(default_factory=KeyStore)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    restarts: int = 0
    resets: int = 0
    restored: list[Path] = field(default_factory=list)
    _meters: list[Meter] = field(default_factory=list)
    _jobs: list[Job] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.store.log.log)
        self.settings: Settings = self.store.settings

    @property
    def meters(self) -> Sequence[Meter]:
        return self._meters

    async def install_meter_list(self, text: str) -> list[Meter]:
        new = parse_meter_list(text)
        self._meters = install(self._meters, new, self.settings.capacity)
        return new

    async def update_settings(self, changes: dict[str, Any]) -> Settings:
        self.settings = await self.writer.update_settings(changes)
        self._meters = apply_capacity(self._meters, self.settings.capacity)
        return self.settings

    async def update_meter(self, key: str, changes: dict[str, Any]) -> Meter:
        index = next(i for i, m in enumerate(self._meters) if m.key == key)
        self._meters[index] = replace(self._meters[index], **changes)
        self._meters = apply_capacity(self._meters, self.settings.capacity)
        return self._meters[index]

    async def remove_meters(self, keys: Sequence[str]) -> int:
        before = len(self._meters)
        self._meters = [m for m in self._meters if m.key not in keys]
        return before - len(self._meters)

    async def store_reading(self, key: str, at: int, energy: int, volume: str) -> None:
        from decimal import Decimal

        reading = Reading.of(key, at, [(HEAT, energy), (VOLUME, Decimal(volume))])
        await self.writer.put_readings([reading])
        health = self.health.setdefault(key, MeterHealth(key))
        health.record(datetime.fromtimestamp(at, UTC), True, response_ms=120.0)

    async def read_now(self, key: str | None = None) -> Any:
        now = int(self.clock.now().timestamp())
        keys = [m.key for m in self._meters if m.active] if key is None else [key]
        for index, meter_key in enumerate(keys):
            await self.store_reading(meter_key, now, 1000 + index, "12.345")
        if key is None:
            job = Job(f"read-{len(self._jobs) + 1}", "read_all", "done", 1.0, len(keys))
            self._jobs.append(job)
            return job
        return _Reading(datetime.fromtimestamp(now, UTC))

    def start_search(self, params: dict[str, Any]) -> Job:
        job = Job(f"scan-{len(self._jobs) + 1}", f"scan_{params.get('kind', 'secondary')}")
        self._jobs.append(job)
        return job

    def jobs(self) -> list[Job]:
        return list(self._jobs)

    async def restart(self) -> None:
        self.restarts += 1

    async def factory_reset(self) -> None:
        self.resets += 1

    async def restore_backup(self, path: Path) -> None:
        self.restored.append(path)


@dataclass
class _Reading:
    read_at: datetime
    ok: bool = True
    error: str | None = None
    telegrams: tuple = ()


async def open_rig(nursery: trio.Nursery, tmp_path: Path) -> RigGateway:
    store = Store.open(store_path(tmp_path))
    writer = StoreWriter(store, in_thread=False)
    await nursery.start(writer.run)
    return RigGateway(store=store, writer=writer, data_dir=tmp_path)


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
