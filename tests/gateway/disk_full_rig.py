"""The store on a small file system of its own: ``python disk_full_rig.py DIR CASE`` (DIR: the
mount point, nothing else on it); prints what came of it as JSON.

``cycle``: a gateway whose disk fills up during its start-up read. It fills the file system as
soon as the gateway runs, waits until the gateway says it holds the cycle, frees the space
again and waits until the cycle is stored.

``map``: a store whose map starts small and whose size limit is far larger than the disk, fed
cycles with raw telegrams until its data outgrows the disk.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import trio
from gatewaykit import seed_settings
from storekit import raw_cycle, trio_clock

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.gateway.store import LogFilter, Store, StoreWriter, store_path
from mbusgw.gateway.store.env import MiB

METERS = 2
# slow enough that the start-up read is still on the bus when the gateway reports it runs
BAUD = 300


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def said(self, words: str) -> Callable[[], bool]:
        return lambda: any(words in line for line in self.lines)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system has no block left."""
    chunk = bytes(64 * 1024)
    with path.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    with path.open("ab", buffering=0) as out:  # the last blocks a short write left
        try:
            while True:
                out.write(b"\0" * 512)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise


async def until(done: Callable[[], bool]) -> None:
    while not done():
        await trio.sleep(0.05)


async def cycle(root: Path) -> dict:
    data = root / "var"
    seed_settings(data, {"modbus": {"enabled": False}, "reading": {"schedule": "0 0 1 1 *"}})
    lines = Lines()
    logging.getLogger("mbusgw").addHandler(lines)
    logging.getLogger("mbusgw").setLevel(logging.INFO)
    interfaces = (InterfaceConfig(name="line", kind="simulator", baud=BAUD, meters=METERS),)
    gateway = Gateway(StartupConfig(data, interfaces=interfaces, web_port=0))
    gateway.disk_retry_s = 0.2
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)  # the start-up read is under way
            assert gateway.store.stats().readings == 0, "the cycle was stored before the fill"
            fill(root / "filler")
            await until(lines.said("are held and stored when there is room"))
            (root / "filler").unlink()
            await until(lines.said("held reading(s) stored"))
            await until(lines.said("read at start:"))
            gateway.stop()
    store = Store.open(store_path(data), readonly=True)
    try:
        return {
            "readings": store.stats().readings,
            "system_log": [entry.text for entry in store.system_log()],
            "console": lines.lines,
        }
    finally:
        store.close()


async def grow_the_map(root: Path) -> dict:
    store = Store.open(root / "store.mdb", clock=trio_clock(), map_size=1 * MiB)
    writer = StoreWriter(store)
    acknowledged, failed = 0, []
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for number in range(100):
                try:
                    await writer.put_readings(raw_cycle(number))
                    acknowledged += 1
                except Exception as error:  # noqa: BLE001 - counted and shown by the test
                    failed.append(str(error))
            await writer.flush()
            writer.close()
    try:
        return {
            "acknowledged": acknowledged,
            "failed": failed[:3],
            "map_bytes": store.env.map_size,
            "max_bytes": store.settings.store.max_bytes,
            "events": [e.text for e in store.system_log(LogFilter(origin="store"))],
            "problems": store.problems(),
        }
    finally:
        store.close()


if __name__ == "__main__":
    case = {"cycle": cycle, "map": grow_the_map}[sys.argv[2]]
    print(json.dumps(trio.run(case, Path(sys.argv[1]))))
