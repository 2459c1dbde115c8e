"""Helpers for the report tests: a store with meter readings and a report service around it."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import trio
from storekit import T0, FixedClock, heat_reading, open_store

from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.events import EventBus
from mbusgw.gateway.services.reports.service import ReportService
from mbusgw.gateway.store import Store, StoreWriter

METERS = ("m1", "m2", "m3")
READINGS = 8  # per meter, 15 minutes apart from T0
VALUE_HEADINGS = ["meter", "quantity", "unit", "description", "time", "meter time", "value"]


def filled_store(tmp_path: Path, clock: WallClock | None = None, readings: int = READINGS) -> Store:
    """A store with ``readings`` heat-meter readings of each meter in ``METERS``."""
    store = open_store(tmp_path, clock or FixedClock(T0 + readings * 900))
    for i in range(readings):
        store.put_readings([heat_reading(meter, i, frames=[_frame(meter, i)]) for meter in METERS])
    return store


def _frame(meter: str, i: int) -> bytes:
    return bytes([0x68, 0x05, 0x05, 0x68, 0x08, i]) + meter.encode()


def stored_values(store: Store, until: int | None = None) -> set[tuple[str, str, int, str]]:
    """(meter, quantity, reception time, value text) of every stored value before ``until``."""
    found = set()
    for info in store.series():
        table = store.values(info.id, until=until)
        for t, value in zip(table.received_at.tolist(), table.values(), strict=True):
            found.add((info.meter, info.quantity, t, str(value)))
    return found


def csv_records(data: bytes) -> tuple[dict[str, list[str]], list[str], list[list[str]]]:
    """A CSV report as (preamble by key, heading row, rows)."""
    rows = list(csv.reader(io.StringIO(data.decode()), delimiter=";"))
    preamble = {row[0][1:]: row[1:] for row in rows if row and row[0].startswith("#")}
    body = [row for row in rows if row and not row[0].startswith("#")]
    return preamble, body[0], body[1:]


def values_of_report(data: bytes) -> set[tuple[str, str, int, str]]:
    """The values of an x101 report, as ``stored_values`` gives them (English, '.')."""
    _, heading, rows = csv_records(data)
    assert heading[:7] == [
        *["meter", "quantity", "unit", "description", "time"],
        "meter time",
        "value",
    ]
    return {
        (row[0], row[1], int(dt.datetime.fromisoformat(row[4]).timestamp()), row[6]) for row in rows
    }


def report_settings(**reports: dict[str, Any]) -> dict[str, Any]:
    return {"reports": {"reports": reports}}


@contextlib.asynccontextmanager
async def running_service(
    store: Store,
    clock: WallClock,
    *,
    in_thread: bool = True,
    start: bool = False,
    events: EventBus | None = None,
    read_all: Callable[[], Any] | None = None,
    meters: Callable[[], Mapping[str, object]] | None = None,
    event_hold_s: float = 10.0,
    writer: StoreWriter | None = None,
) -> AsyncIterator[ReportService]:
    """A writer for ``store`` and a report service; ``start`` runs its scheduling tasks too."""
    writer = writer or StoreWriter(store, in_thread=in_thread)
    service = ReportService(
        store=store,
        writer=writer,
        settings=lambda: store.settings,
        clock=clock,
        events=events or EventBus(),
        read_all=read_all,
        meters=meters,
        event_hold_s=event_hold_s,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        if start:
            await nursery.start(service.run)
        yield service
        nursery.cancel_scope.cancel()
