"""Wireless meters in the running gateway: simulated iM871A and AMB8465 sticks on real ptys
hearing a radio field, the gateway's receivers, decoder and key store, into a real store.

These run in real time (the simulated meters send every 0.2 s); each test has a ``fail_after``
bound and waits for what it needs rather than for a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from gatewaykit import seed_settings
from test_search_and_meter_commands import mbusgw

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.events import READINGS_STORED
from mbusgw.gateway.meters import MeterListError
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.gateway.store import ReadingStatus, Store, store_path

QUIET = {"modbus": {"enabled": False}, "reading": {"schedule": "0 0 1 1 *"}}
RECEIVERS = (
    InterfaceConfig(
        name="rx1", kind="simulated_receiver", protocol="im871a", meters=4, interval=0.2
    ),
    InterfaceConfig(
        name="rx2", kind="simulated_receiver", protocol="amb8465", meters=4, interval=0.2
    ),
)


def startup(data_dir: Path, *interfaces: InterfaceConfig) -> StartupConfig:
    return StartupConfig(data_dir, web_port=0, interfaces=interfaces or RECEIVERS)


@asynccontextmanager
async def running(data_dir: Path, *interfaces: InterfaceConfig) -> AsyncIterator[Gateway]:
    """A gateway on ``data_dir`` (the simulated receivers unless told otherwise), stopped at
    the end of the block; at most a minute."""
    gateway = Gateway(startup(data_dir, *interfaces))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            yield gateway
            gateway.stop()


async def wait_until(check: Callable[[], bool], step: float = 0.05) -> None:
    while not check():
        await trio.sleep(step)


def good_readings(gateway: Gateway, key: str) -> int:
    health = gateway.health.get(key)
    return 0 if health is None else health.readings - health.failures


def field_of(gateway: Gateway):
    assert gateway.wireless is not None and gateway.wireless.simulation is not None
    return gateway.wireless.simulation.field


def open_store(data_dir: Path) -> Store:
    return Store.open(store_path(data_dir), readonly=True)


async def test_simulated_receivers_install_read_and_store(tmp_path: Path) -> None:
    seed_settings(tmp_path, QUIET)
    gateway = Gateway(startup(tmp_path))
    events = gateway.events.subscribe()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            field = field_of(gateway)
            installed = {m.identity.id: m for m in field.meters if m.installed}
            neighbour = next(m for m in field.meters if not m.installed).identity.id
            assert {m.key: m.wireless for m in gateway.meters} == dict.fromkeys(installed, True)
            for meter in gateway.meters:  # each bound to the receiver that hears it best
                assert meter.interface == field.strongest(meter.key, ["rx1", "rx2"])
            assert len(gateway.keys.entries()) == 2  # the encrypted meters' keys, preloaded
            await wait_until(lambda: all(good_readings(gateway, k) >= 3 for k in installed))
            await wait_until(lambda: neighbour in {h["key"] for h in gateway.wireless.heard()})
            heard = {h["key"]: h for h in gateway.wireless.heard()}
            assert heard[neighbour]["installed"] is False
            assert heard[neighbour]["status"] == "missing key"
            assert set(heard[neighbour]["rssi"]) == {"rx1", "rx2"}
            live = gateway.live.last_good(next(iter(installed)))
            assert live is not None and live.telegrams[0].records
            meter = gateway.meter(next(iter(installed)))
            with pytest.raises(ValueError, match="wireless"):
                await gateway.read_meter(meter.key)
            assert (await gateway.read_all()).readings == []  # nothing wired to read
            await gateway.writer.flush()
            await wait_until(lambda: all(gateway.store.meter(k) for k in installed))
            register_map = gateway.modbus.map_csv()  # Modbus serves the stored values
            for key in installed:
                assert f",{key}," in register_map
            gateway.stop()
    stored = []
    while True:
        try:
            event = events.receive_nowait()
        except trio.WouldBlock:
            break
        if event.kind == READINGS_STORED:
            stored += event.detail["meters"]
    assert set(stored) == set(installed)
    store = open_store(tmp_path)
    try:
        assert {m.name for m in store.meters()} == set(installed)  # the neighbour: not stored
        for key in installed:
            log = list(store.meter_log(key))
            assert len(log) >= 3 and {e.status for e in log} == {ReadingStatus.OK}
            assert store.series(key)
            assert store.raw_telegrams(key)
    finally:
        store.close()


async def test_a_missing_or_wrong_key_is_a_decrypt_error_with_no_values(tmp_path: Path) -> None:
    seed_settings(tmp_path, QUIET)
    store = Store.open(store_path(tmp_path))
    try:  # a key store that was used before: the simulated meters' keys are not preloaded
        store.put_record("keys", "state", {"format": 1, "next_id": 7})
    finally:
        store.close()
    async with running(tmp_path) as gateway:
        assert gateway.keys.entries() == ()
        (missing, key), (wrong, _) = field_of(gateway).installer_keys()
        missing, wrong = missing.id, wrong.id
        await gateway.keys.add("00" * 16, address=wrong)

        def failing(key: str, times: int = 2) -> bool:
            health = gateway.health.get(key)
            return health is not None and health.consecutive_failures >= times

        def wrong_key_reported() -> bool:
            health = gateway.health.get(wrong)
            return health is not None and "wrong key" in (health.last_error or "")

        # the key takes effect once it is saved: what is heard before fails for want of a key,
        # however many telegrams that is, so wait for the wrong-key failure itself
        await wait_until(lambda: failing(missing) and failing(wrong, 2) and wrong_key_reported())
        assert "MissingKeyError" in (gateway.health[missing].last_error or "")
        assert "wrong key" in (gateway.health[wrong].last_error or "")
        failures_before = gateway.health[missing].failures
        await gateway.keys.add(key, address=missing)
        await wait_until(lambda: gateway.health[missing].status == "ok")
    store = open_store(tmp_path)
    try:
        missing_log = list(store.meter_log(missing))
        failed = [e for e in missing_log if e.status == ReadingStatus.DECRYPT_ERROR]
        assert len(failed) >= failures_before >= 2
        assert all("MissingKeyError" in e.error and "no AES key" in e.error for e in failed)
        assert {e.status for e in missing_log[: len(failed)]} == {ReadingStatus.DECRYPT_ERROR}
        assert missing_log[-1].status == ReadingStatus.OK  # the key came, the meter decodes
        # the wrong key's meter never decoded: the meter log has it, the values have nothing
        wrong_log = list(store.meter_log(wrong))
        assert len(wrong_log) >= 2
        assert {e.status for e in wrong_log} == {ReadingStatus.DECRYPT_ERROR}
        assert "wrong key" in wrong_log[-1].error
        assert store.series(wrong) == []
        assert store.series(missing)
    finally:
        store.close()


async def test_reinstall_moves_a_meter_to_the_stronger_receiver(tmp_path: Path) -> None:
    seed_settings(tmp_path, QUIET)
    async with running(tmp_path) as gateway:
        field = field_of(gateway)
        wireless = gateway.wireless
        assert wireless is not None
        near_rx1, near_rx2 = (m for m in gateway.meters if m.interface == "rx1")
        for meter in gateway.meters:
            await wait_until(lambda m=meter: good_readings(gateway, m.key) >= 1)
        assert (await gateway.reinstall_wireless())["moved"] == []
        # one meter moved next to rx2, another only a little stronger there
        field.set_level(near_rx1.key, "rx1", -90.0)
        field.set_level(near_rx1.key, "rx2", -50.0)
        level = field.level(near_rx2.key, "rx1")
        field.set_level(near_rx2.key, "rx2", level + 0.5)
        identity = gateway.meter(near_rx1.key)

        def heard_at(key: str, receiver: str, low: float) -> bool:
            ids = [m for m in wireless.service.heard_meters() if m.id == key]
            return bool(ids) and wireless.service.rssi_by_receiver(ids[0])[receiver] >= low

        await wait_until(lambda: heard_at(near_rx1.key, "rx2", -52.0))
        await wait_until(lambda: heard_at(near_rx2.key, "rx2", level - 0.5))
        result = await gateway.reinstall_wireless()
        assert [(m["meter"], m["old"], m["new"]) for m in result["moved"]] == [
            (near_rx1.key, "rx1", "rx2")
        ]
        assert result["meters"] == 4 and result["not_heard"] == []
        moved = gateway.meter(near_rx1.key)
        assert (moved.interface, moved.enhanced_address) == ("rx2", "rx2")
        assert identity.manufacturer == moved.manufacturer
        assert gateway.meter(near_rx2.key).interface == "rx1"
        with pytest.raises(KeyError):
            await gateway.reinstall_wireless("00000000")
    store = open_store(tmp_path)
    try:
        assert store.record("installation", near_rx1.key)["interface"] == "rx2"
        texts = [entry.text for entry in store.system_log()]
        assert any(
            text.startswith(f"re-install meter {near_rx1.key}: receiver rx1 (")
            and "→ rx2 (" in text
            for text in texts
        )
        assert any("re-install: 1 of 4 wireless meter(s) moved" in text for text in texts)
    finally:
        store.close()


async def test_stopping_loses_no_telegram(tmp_path: Path) -> None:
    seed_settings(tmp_path, QUIET)
    fast = tuple(
        InterfaceConfig(name=c.name, kind=c.kind, protocol=c.protocol, meters=4, interval=0.05)
        for c in RECEIVERS
    )
    async with running(tmp_path, *fast) as gateway:
        await wait_until(lambda: sum(h.readings for h in gateway.health.values()) >= 40)
    accounted = {key: health.readings for key, health in gateway.health.items()}
    store = open_store(tmp_path)
    try:
        logged = {meter.name: len(store.meter_log(meter.name)) for meter in store.meters()}
    finally:
        store.close()
    assert logged == accounted


async def test_wireless_search_installs_what_is_heard(tmp_path: Path) -> None:
    seed_settings(tmp_path, QUIET)
    async with running(tmp_path) as gateway:
        await gateway.remove_meters({m.key for m in gateway.meters})
        updates: list[tuple[float, int]] = []
        result = await gateway.search_wireless(
            1.5, progress=lambda done, found: updates.append((done, found))
        )
        field = field_of(gateway)
        assert result["found"] == result["new"] == result["installed"] == 5
        done = [fraction for fraction, _ in updates]
        assert len(done) >= 2 and done == sorted(done) and 0 <= done[0] < done[-1] < 1
        assert len(gateway.meters) == 5 and all(m.wireless for m in gateway.meters)
        neighbour = next(m for m in field.meters if not m.installed).identity.id
        for meter in gateway.meters:  # bound to the strongest (the neighbour: equal at both)
            strongest = field.strongest(meter.key, ["rx1", "rx2"])
            assert meter.interface in (("rx1", "rx2") if meter.key == neighbour else (strongest,))
            assert meter.manufacturer is not None and meter.medium is not None
        again = await gateway.search_wireless(0.5, install=False)
        assert again["new"] == 0 and again["installed"] == 0


async def test_meter_list_rows_for_wireless_meters(tmp_path: Path) -> None:
    seed_settings(tmp_path, {**QUIET, "reading": {"read_at_start": False}})
    wired = InterfaceConfig(name="line", kind="simulator", baud=9600, meters=2)
    header = "Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress,EnhancedAddress\n"
    async with running(tmp_path, wired, *RECEIVERS) as gateway:
        field = field_of(gateway)
        first, second, third = (m.identity.id for m in field.meters[:3])
        await gateway.remove_meters({m.key for m in gateway.meters})
        await wait_until(lambda: len(gateway.wireless.heard()) >= 3)
        rows = (
            f"Flat 1,{first},2400,esecondary,,wireless\n"
            f"Flat 2,{second},2400,esecondary,,rx2\n"
            f"Flat 3,{third},2400,esecondary,,70000003\n"
        )
        meters = {m.key: m for m in await gateway.install_meter_list(header + rows)}
        assert meters[first].wireless and meters[first].interface == "rx1"
        assert (meters[second].interface, meters[second].enhanced_address) == ("rx2", "rx2")
        assert not meters[third].wireless and meters[third].interface == "line"
        assert meters[third].enhanced_address == "70000003"
        with pytest.raises(MeterListError) as caught:
            await gateway.install_meter_list(header + "Flat 4,12345678,2400,primary,4,rx3\n")
        assert [(e.line, e.column) for e in caught.value.errors] == [(2, "EnhancedAddress")]
        assert len(gateway.meters) == 3


def test_search_command_listens_and_installs(tmp_path: Path) -> None:
    config = tmp_path / "mbusgw.toml"
    config.write_text(
        "".join(
            f'[[interfaces]]\nname = "{c.name}"\nkind = "simulated_receiver"\n'
            f'protocol = "{c.protocol}"\ninterval = 0.2\n'
            for c in RECEIVERS
        )
    )
    common = ["--data-dir", str(tmp_path / "data")]
    found = mbusgw(
        "search", "--mode", "wireless", "--listen", "1.5", "--config", str(config), *common
    )
    assert found.returncode == 0, found.stderr
    assert "5 meter(s) heard, 5 newly installed" in found.stdout
    listing = mbusgw("meters", "list", *common)
    assert listing.stdout.count("esecondary") == 5, listing.stdout
    bare = tmp_path / "wired.toml"
    bare.write_text('[[interfaces]]\nname = "a"\nkind = "simulator"\n')
    refused = mbusgw("search", "--mode", "wireless", "--config", str(bare), *common)
    assert refused.returncode == 2 and "no wireless M-Bus receiver" in refused.stderr
