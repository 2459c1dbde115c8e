"""The gateway's wireless path on the mock clock: frames handed to the service as receivers
would deliver them, the store batches, and what a re-install weighs (recent levels, margin)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import trio

from mbusgw.core.errors import MissingKeyError
from mbusgw.gateway.clock import TrioWallClock
from mbusgw.gateway.keys import KeyStore
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.reading import MeterReading
from mbusgw.gateway.receivers import RadioFrame
from mbusgw.gateway.settings import InterfaceConfig
from mbusgw.gateway.simulator.radio import RadioMeter, default_field
from mbusgw.gateway.wireless import (
    FLUSH_INTERVAL,
    MAX_BATCH,
    RSSI_WINDOW,
    WirelessNetwork,
    wireless_meter,
)

EPOCH = datetime(2026, 3, 1, tzinfo=UTC)
CONFIGS = tuple(
    InterfaceConfig(name=name, kind="hex_tcp", host="127.0.0.1", port=9) for name in ("rx1", "rx2")
)


class Rig:
    """A network over two receivers (never opened: frames are handed in) and a field."""

    def __init__(self) -> None:
        self.recorded: list[MeterReading] = []
        self.batches: list[list[MeterReading]] = []
        self.keys = KeyStore()
        self.network = WirelessNetwork(
            CONFIGS, keys=self.keys, clock=TrioWallClock(EPOCH), record=self.recorded.append
        )
        self.field = default_field(["rx1", "rx2"], 4, seed=3)
        self.access = 0

    def meter(self, index: int) -> RadioMeter:
        return self.field.meters[index]

    def install(self, *indexes: int, receiver: str = "rx1") -> list[Meter]:
        meters = [wireless_meter(self.meter(i).meter_id, receiver) for i in indexes]
        self.network.set_meters(meters)
        return meters

    def hear(self, index: int, levels: dict[str, float]) -> None:
        """One telegram of meter ``index`` heard by each receiver at its level."""
        self.access += 1
        telegram = self.meter(index).telegram(self.access, self.access & 0xFF)
        for receiver, dbm in levels.items():
            self.network.service.handle(RadioFrame(telegram, receiver, dbm, "stripped"))

    async def sink(self, readings, learned) -> None:
        self.batches.append(list(readings))


async def test_readings_of_installed_meters_are_batched(autojump_clock) -> None:
    rig = Rig()
    plain, encrypted = 0, 1
    rig.install(plain, encrypted)
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.network.run_store, rig.sink)
        rig.hear(plain, {"rx1": -60.0, "rx2": -70.0})
        rig.hear(encrypted, {"rx1": -65.0})
        rig.hear(4, {"rx2": -90.0})  # the neighbour: heard, not installed
        assert len(rig.recorded) == 2 and rig.batches == []
        await trio.sleep(FLUSH_INTERVAL + 0.01)
        (batch,) = rig.batches
        ok, failed = batch
        assert ok.ok and ok.telegrams[0].records and len(ok.frames) == 1
        assert not failed.ok and failed.failure is MissingKeyError
        assert "no AES key" in (failed.error or "")
        heard = {h["key"]: h for h in rig.network.heard()}
        assert heard[rig.meter(4).identity.id]["installed"] is False
        assert heard[rig.meter(plain).identity.id]["rssi"] == {"rx1": -60.0, "rx2": -70.0}
        for _ in range(MAX_BATCH):  # a full batch goes at once
            rig.hear(plain, {"rx1": -60.0})
        await trio.sleep(0.01)
        assert len(rig.batches) == 2 and len(rig.batches[1]) == MAX_BATCH
        nursery.cancel_scope.cancel()


async def test_passive_meters_are_not_stored_and_identities_are_learnt(autojump_clock) -> None:
    rig = Rig()
    meter = rig.meter(0)
    entered = replace(
        wireless_meter(meter.meter_id, None), manufacturer=None, version=None, medium=None
    )
    rig.network.set_meters([entered, replace(wireless_meter(rig.meter(2).meter_id, "rx1"),
                                             active=False)])  # fmt: skip
    rig.hear(0, {"rx2": -61.0})
    rig.hear(2, {"rx1": -61.0})
    assert [r.meter.key for r in rig.network.pending] == [meter.identity.id]
    learned: dict = {}

    async def sink(readings, identities) -> None:
        learned.update(identities)

    await rig.network.flush(sink)
    assert learned == {meter.identity.id: meter.meter_id}
    assert rig.network.bind([entered])[0].interface == "rx2"


async def test_reinstall_weighs_recent_levels_with_a_margin(autojump_clock) -> None:
    rig = Rig()
    first, second, silent = rig.install(0, 1, 2)
    rig.hear(0, {"rx1": -60.0, "rx2": -58.0})  # a little stronger at rx2: stays
    rig.hear(1, {"rx1": -80.0, "rx2": -55.0})  # much stronger at rx2: moves
    moves, not_heard = rig.network.rebindings([first, second, silent])
    assert [(m.meter, m.old, m.new, m.old_dbm, m.new_dbm) for m in moves] == [
        (second.key, "rx1", "rx2", -80.0, -55.0)
    ]
    assert not_heard == [silent.key]
    await trio.sleep(RSSI_WINDOW + 1)  # an hour later only rx2 hears the first meter
    rig.hear(0, {"rx2": -75.0})
    (move,) = rig.network.rebindings([first])[0]
    assert (move.old, move.new, move.old_dbm) == ("rx1", "rx2", None)
    assert str(move) == f"meter {first.key}: receiver rx1 (not heard lately) → rx2 (-75.0 dBm)"
    await trio.sleep(RSSI_WINDOW + 1)
    assert rig.network.rebindings([first, second]) == ([], [first.key, second.key])
