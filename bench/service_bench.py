"""What the benches of a northbound service over TCP share: a real store (LMDB in a temporary
directory) with the newest cycles of ``meters`` meters, the bench gateway over it with the
service's settings, and the run of the bench in that temporary directory."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from bench.bench_web import SLOT, YEAR_START, BenchGateway, FixedClock, _fill, _meter
from mbusgw.gateway.settings import StartupConfig
from mbusgw.gateway.store import Store, StoreWriter

Bench = Callable[[Path, argparse.Namespace], Awaitable[dict[str, Any]]]


@asynccontextmanager
async def service_gateway(
    workdir: Path, meters: int, settings: dict[str, Any]
) -> AsyncIterator[tuple[BenchGateway, trio.Nursery]]:
    """The gateway, and a nursery to start the service in (cancelled at the end)."""
    clock = FixedClock(YEAR_START)
    store = Store.open(workdir / "store.mdb", clock=clock)
    names, _ = await _fill(store, meters, 1)
    clock.time = YEAR_START + (96 + 8) * SLOT
    store.update_settings(settings)
    writer = StoreWriter(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        listed = [_meter(key, i) for i, key in enumerate(names)]
        yield BenchGateway(store, writer, StartupConfig(data_dir=workdir), clock, listed), nursery
        writer.close()
        nursery.cancel_scope.cancel()
    store.close()


def run_in_tempdir(name: str, bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(
        prefix=f"mbusgw-bench-{name}-", ignore_cleanup_errors=True
    ) as tmp:
        return trio.run(bench, Path(tmp), args)
