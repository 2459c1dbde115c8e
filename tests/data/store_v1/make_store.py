"""How ``store.mdb`` here was made (store format 1, before the format version 2 migration).

Run with the code of that time from the repository root: ``python
tests/data/store_v1/make_store.py OUT_DIR``. The gateway runs on its built-in simulated lines
and receivers, installs their meters, reads every wired meter once, stores what the wireless
meters send for a few seconds, changes two settings, and stops.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.settings import StartupConfig
from mbusgw.gateway.store import Store, store_path


async def main(data_dir: Path) -> None:
    with Store.open(store_path(data_dir)) as store:
        store.update_settings({"modbus": {"port": 0}})  # any free port
    gateway = Gateway(StartupConfig(data_dir=data_dir, web_port=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        await gateway.read_all()
        await trio.sleep(8)  # wireless telegrams arrive and are stored
        await gateway.update_settings({"reading": {"not_seen_after_min": 90}})
        gateway.stop()


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]))
