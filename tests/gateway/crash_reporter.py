"""The process the report crash test kills: it sends report ``push`` and dies right after the
receiver accepted it, before the delivery cursor is committed.

Run as ``python crash_reporter.py STORE NOW``. The report's settings are already in the store.
The cursor commit is replaced by a SIGKILL of this process: the moment a power cut or a crash
would hurt most.
"""

from __future__ import annotations

import os
import signal
import sys

import trio
from storekit import FixedClock

from mbusgw.gateway.events import EventBus
from mbusgw.gateway.services.reports import runner
from mbusgw.gateway.services.reports.service import ReportService
from mbusgw.gateway.store import Store, StoreWriter


async def die_instead_of_committing(*args: object) -> None:
    print("SENT", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


async def main(path: str, now: int) -> None:
    store = Store.open(path, clock=FixedClock(now))
    writer = StoreWriter(store)
    runner.commit_cursor = die_instead_of_committing
    service = ReportService(
        store=store,
        writer=writer,
        settings=lambda: store.settings,
        clock=store.clock,
        events=EventBus(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await service.runner.attempt("push")
        print("COMMITTED", flush=True)  # never reached
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
