"""A full reading beside continuous mode: its progress counts its own readings only, and
continuous mode leaves the lines to it while it runs (its values reach the snapshot anyway)."""

from __future__ import annotations

from pathlib import Path

import trio
from gatewaykit import seed_settings

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig

LINES = (InterfaceConfig(name="line1", kind="simulator", baud=38400, meters=4),)


async def test_read_all_counts_its_own_readings_with_continuous_mode_on(tmp_path: Path) -> None:
    seed_settings(
        tmp_path,
        {
            "modbus": {"enabled": False},
            "reading": {"read_at_start": False, "continuous": True, "schedule": "0 0 1 1 *"},
        },
    )
    gateway = Gateway(StartupConfig(tmp_path, interfaces=LINES), northbound=[])
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            keys = [m.key for m in gateway.meters]
            # continuous mode has read every meter twice: it is busy on the line
            while any((h := gateway.health.get(key)) is None or h.readings < 2 for key in keys):
                await trio.sleep(0.05)

            def readings() -> int:
                return sum(gateway.health[key].readings for key in keys)

            told: list[tuple[int, int]] = []
            counted: list[int] = []  # every meter's readings so far, at each of the cycle's

            def progress(read: int, total: int) -> None:
                told.append((read, total))
                counted.append(readings())

            before = readings()
            result = await gateway.read_all(progress=progress)
            during = counted[-1] - before
            gateway.stop()
    assert len(result.readings) == 4 and not result.failed
    assert told == [(n, 4) for n in range(1, 5)]
    # the cycle's four readings, and at most the one continuous read it found under way
    assert 4 <= during <= 4 + 1
