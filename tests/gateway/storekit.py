"""Helpers for the store tests: stores on temporary paths and readings of a heat meter.

Rules for the trio tests here (as in trio-websocket): a test that sleeps runs on the
``autojump_clock``; every test that does I/O has a ``trio.fail_after``. MockClock's autojump
races ahead while a worker thread commits, so writers under the mock clock use
``StoreWriter(store, in_thread=False)``, and tests wait for ``writer.flush()``, never for a
sleep, before they look at what was written.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from mbusgw.gateway.clock import TrioWallClock, WallClock
from mbusgw.gateway.store import SeriesSpec, Store, StoredReading

T0 = 1_700_006_400  # 2023-11-15T00:00:00Z, a day boundary
DAY = 86_400
ENERGY = SeriesSpec(b"\x04\x06", "energy", "kWh")
VOLUME = SeriesSpec(b"\x04\x13", "volume", "m³")
FLOW_TEMPERATURE = SeriesSpec(b"\x02\x59", "flow_temperature", "°C", "supply")
FABRICATION = SeriesSpec(b"\x0d\x78", "fabrication_number", "")


class FixedClock:
    """A wall clock that stands still until a test moves it (seconds since the epoch)."""

    def __init__(self, time: float) -> None:
        self.time = time

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time, dt.UTC)

    def advance(self, seconds: float) -> None:
        self.time += seconds


def trio_clock(at: float = T0) -> TrioWallClock:
    """Wall time on trio's clock from ``at`` (call it inside trio)."""
    return TrioWallClock(dt.datetime.fromtimestamp(at, dt.UTC))


def open_store(tmp_path: Path, clock: WallClock | None = None, **kwargs: object) -> Store:
    return Store.open(tmp_path / "store.mdb", clock=clock or FixedClock(T0), **kwargs)  # type: ignore[arg-type]


def heat_reading(meter: str, i: int, *, start: int = T0, **fields: object) -> StoredReading:
    """Reading ``i`` of a 15-minute series: growing counters, a temperature, a text value."""
    fields.setdefault("meter_time", start + i * 900)
    return StoredReading.of(
        meter,
        start + i * 900 + 7,
        [
            (ENERGY, 12_000 + 3 * i),
            (VOLUME, Decimal(456_789 + 11 * i).scaleb(-3)),
            (FLOW_TEMPERATURE, Decimal(650 + i % 7).scaleb(-1)),
            (FABRICATION, f"A{meter}"),
        ],
        **fields,  # type: ignore[arg-type]
    )


def raw_cycle(number: int, meters: int = 20) -> list[StoredReading]:
    """Cycle ``number`` of ``meters`` heat meters 40 days back, each with 2 KiB of raw frames
    (to fill a store quickly)."""
    frame = bytes(range(256)) * 2
    return [
        heat_reading(f"m{m}", number, start=T0 - 40 * DAY, frames=[frame] * 4)
        for m in range(meters)
    ]


def series_id(store: Store, meter: str, quantity: str) -> int:
    return next(s.id for s in store.series(meter) if s.quantity == quantity)
