"""One telegram is decoded once between the line and the store, and never again after.

Every module of the package that holds the core decoder gets a counting one, so a second decode
anywhere on the path (the bus master, the pipeline, the store, the Modbus stored source) shows.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from gatewaykit import seed_settings

from mbusgw.core import decode
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.services.modbus_stored import StoredValuesSource
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig

QUIET = {
    "modbus": {"enabled": False},
    "reading": {"schedule": "0 0 1 1 *", "read_at_start": False},
}


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> Counter[bytes]:
    """Frames given to the core decoder from now on, wherever it is called from."""
    decoded: Counter[bytes] = Counter()

    def counting(frame: bytes, _decode: Callable = decode) -> object:
        decoded[bytes(frame)] += 1
        return _decode(frame)

    for name, module in list(sys.modules.items()):
        if name.startswith("mbusgw"):
            for attribute, value in list(vars(module).items()):
                if value is decode:
                    monkeypatch.setattr(module, attribute, counting)
    return decoded


async def test_each_telegram_is_decoded_once_from_line_to_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_settings(tmp_path, QUIET)
    line = InterfaceConfig(name="a", kind="simulator", baud=9600, meters=5)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = Gateway(StartupConfig(tmp_path, web_port=0, interfaces=(line,)))
            await nursery.start(gateway.run)
            decoded = count_decodes(monkeypatch)
            result = await gateway.read_all()
            frames = Counter(frame for reading in result.readings for frame in reading.frames)
            assert [r.error for r in result.failed] == []
            assert any(len(reading.frames) > 1 for reading in result.readings)  # multi-telegram
            assert decoded == frames
            # the stored readings tell who sent them without a decode
            assert gateway.store is not None
            meters = lambda: gateway.meters  # noqa: E731
            source = StoredValuesSource(gateway.store, meters, gateway.clock, gateway.events)
            for reading in result.readings:
                header = reading.telegrams[0].header
                identity = source.values(reading.meter).identity
                assert identity.version == header.version and identity.medium == header.medium
            assert decoded == frames
            gateway.stop()
