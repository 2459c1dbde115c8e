"""The process the crash test kills: it stores batches and prints each acknowledged one.

Run as ``python crash_writer.py STORE``. Batch ``b`` holds one reading of each of ``METERS``
meters, received one hour apart per batch, so UTC days close every 24 batches and compaction
and retention run while batches keep coming. It continues after the newest batch in the store.
"""

from __future__ import annotations

import sys
from decimal import Decimal

import trio
from storekit import FABRICATION, FLOW_TEMPERATURE, T0, VOLUME, FixedClock

from mbusgw.gateway.store import (
    CompactionService,
    ReadingStatus,
    SeriesSpec,
    Store,
    StoredReading,
    StoreWriter,
)
from mbusgw.gateway.store.retention import apply_retention

METERS = 8
HOUR = 3600
ENERGY = SeriesSpec(b"\x04\x06", "energy", "kWh")


def received(batch: int, meter: int) -> int:
    return T0 + batch * HOUR + meter * 5


def expected(batch: int, meter: int) -> list[object]:
    """The values of ``meter`` in ``batch`` (a failed reading every 11th batch: none)."""
    if (batch + meter) % 11 == 0:
        return []
    return [
        1000 + 10 * batch + meter,
        Decimal(batch * 7 + meter).scaleb(-3),
        Decimal(600 + batch % 50).scaleb(-1),
        f"F{meter}-{batch % 3}",
    ]


def batch(number: int) -> list[StoredReading]:
    readings = []
    for meter in range(METERS):
        values = expected(number, meter)
        if not values:
            readings.append(
                StoredReading(
                    f"m{meter}", received(number, meter), status=ReadingStatus.NO_RESPONSE
                )
            )
            continue
        specs = [ENERGY, VOLUME, FLOW_TEMPERATURE, FABRICATION]
        readings.append(
            StoredReading.of(
                f"m{meter}",
                received(number, meter),
                list(zip(specs, values, strict=True)),
                frames=[bytes([0x68, number % 256, meter]) * 20],
                status_byte=number % 4,
            )
        )
    return readings


async def main(path: str) -> None:
    clock = FixedClock(T0)
    store = Store.open(path, clock=clock)
    store.update_settings({"store": {"log_max_bytes": 64 * 1024, "raw_days": 3}})
    newest = store.stats().newest
    start = 0 if newest is None else (newest - T0) // HOUR + 1
    writer = StoreWriter(store)
    compaction = CompactionService(writer)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)

        async def maintain() -> None:
            while True:
                await compaction.compact_closed_days()
                await writer.submit(apply_retention)
                await trio.sleep(0.005)

        nursery.start_soon(maintain)
        number = start
        while True:
            clock.time = received(number, METERS) + 1
            for i in range(10):
                store.log.info("crash-test", f"batch {number} message {i}")
            await writer.put_readings(batch(number))
            print(f"ACK {number}", flush=True)
            number += 1


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
