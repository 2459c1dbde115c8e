"""The gateway end to end: real simulated lines over TCP and a pty, the real store, the
supervisor, settings changes, continuous mode, shutdown.

These run in real time (the simulator times every byte), at 9600 baud to stay quick; each test
has a ``fail_after`` bound.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from gatewaykit import seed_settings

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.events import CYCLE_FINISHED, Event
from mbusgw.gateway.meters import MeterListError
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.gateway.simulator import SimLine, default_meters, serve_pty, serve_tcp
from mbusgw.gateway.store import ReadingStatus, Store, store_path
from mbusgw.gateway.supervisor import FunctionService

QUIET = {"modbus": {"enabled": False}, "reading": {"schedule": "0 0 1 1 *"}}


def stored(data_dir: Path) -> tuple[int, dict[str, int]]:
    store = Store.open(store_path(data_dir), readonly=True)
    try:
        readings = store.stats().readings
        logs = {meter.name: len(store.meter_log(meter.name)) for meter in store.meters()}
        return readings, logs
    finally:
        store.close()


async def run_gateway(nursery: trio.Nursery, startup: StartupConfig) -> Gateway:
    gateway = Gateway(startup)
    await nursery.start(gateway.run)
    return gateway


async def test_embedded_simulator_installs_reads_and_stores(tmp_path: Path) -> None:
    seed_settings(tmp_path, QUIET)
    interfaces = (
        InterfaceConfig(name="a", kind="simulator", baud=9600, meters=4),
        InterfaceConfig(name="b", kind="simulator", baud=9600, meters=3),
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = await run_gateway(nursery, StartupConfig(tmp_path, interfaces=interfaces))
            assert len(gateway.active_meters()) == 7
            result = await gateway.read_all()
            assert [r.error for r in result.failed] == []
            assert {r.meter.interface for r in result.readings} == {"a", "b"}
            multi = [r for r in result.readings if len(r.telegrams) > 1]
            assert multi, "the default mix has multi-telegram meters, read completely"
            # the last cycle is kept as each meter's outcome, without the readings' data
            kept = gateway.last_cycle
            assert kept is not None and kept.summary() == result.summary()
            assert [(r.meter, r.ok, r.read_at) for r in kept.readings] == [
                (r.meter, r.ok, r.read_at) for r in result.readings
            ]
            assert not any(r.frames or r.telegrams for r in kept.readings)
            gateway.stop()
    readings, logs = stored(tmp_path)
    assert readings >= 7  # the reading at start-up and this one
    assert len(logs) == 7 and all(count >= 1 for count in logs.values())


async def test_tcp_and_pty_lines_and_a_restart_keeps_the_meter_list(tmp_path: Path) -> None:
    seed_settings(tmp_path, {**QUIET, "reading": {"read_at_start": False}})
    tcp_line = SimLine(default_meters(3, seed=11), 9600, name="converter")
    pty_line = SimLine(default_meters(2, seed=12), 9600, name="serial")
    csv = "Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress\n"
    with trio.fail_after(60):
        async with trio.open_nursery() as sims:
            port = await sims.start(serve_tcp, tcp_line, "127.0.0.1", 0)
            device = await sims.start(serve_pty, pty_line)
            interfaces = (
                InterfaceConfig(name="tcp1", kind="tcp", host="127.0.0.1", port=port, baud=9600),
                InterfaceConfig(name="tty1", kind="serial", device=device, baud=9600),
            )
            startup = StartupConfig(tmp_path, interfaces=interfaces)
            async with trio.open_nursery() as nursery:
                gateway = await run_gateway(nursery, startup)
                assert gateway.meters == []  # real interfaces: nothing installed by itself
                rows = "".join(
                    f"m{m.primary},{m.identity.id},9600,secondary,{m.primary}\n"
                    for m in tcp_line.meters
                )
                await gateway.install_meter_list(csv + rows, interface="tcp1")
                rows = "".join(f"p{m.primary},,9600,primary,{m.primary}\n" for m in pty_line.meters)
                await gateway.install_meter_list(csv + rows, interface="tty1")
                result = await gateway.read_all()
                assert len(result.readings) == 5 and not result.failed
                # a bad list installs nothing and says why, row by row
                with pytest.raises(MeterListError) as caught:
                    await gateway.install_meter_list(csv + "x,123,9600,secondary,\n", "tcp1")
                assert caught.value.errors[0].line == 2
                assert len(gateway.meters) == 5
                gateway.stop()
            async with trio.open_nursery() as nursery:
                gateway = await run_gateway(nursery, startup)
                assert [m.key for m in gateway.meters][:3] == [
                    m.identity.id for m in tcp_line.meters
                ]
                assert len(gateway.meters) == 5
                reading = await gateway.read_meter(gateway.meters[-1].key)
                assert reading.ok, reading.error
                gateway.stop()
            sims.cancel_scope.cancel()


async def test_silent_meter_fails_others_are_read_and_health_follows(tmp_path: Path) -> None:
    seed_settings(
        tmp_path,
        {**QUIET, "reading": {"read_at_start": False}, "mbus": {"timing": {"read_retries": 1}}},
    )
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=3),)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = await run_gateway(nursery, StartupConfig(tmp_path, interfaces=interfaces))
            events = gateway.events.subscribe()
            simulated = gateway.simulators["a"].line.meters
            simulated[1].silent = True
            result = await gateway.read_all()
            assert [r.meter.key for r in result.failed] == [simulated[1].identity.id]
            assert "no response" in result.failed[0].error.lower()
            assert gateway.health[simulated[1].identity.id].status == "failed"
            assert events.receive_nowait().kind == "meter_failed"
            simulated[1].silent = False
            assert (await gateway.read_meter(simulated[1].identity.id)).ok
            assert gateway.health[simulated[1].identity.id].status == "ok"
            gateway.stop()
    store = Store.open(store_path(tmp_path), readonly=True)
    try:
        log = store.meter_log(simulated[1].identity.id)
        statuses = [ReadingStatus(int(status)) for status in log.status]
        assert statuses == [ReadingStatus.NO_RESPONSE, ReadingStatus.OK]
        assert "no response" in log.errors[0].lower() and log.errors[1] == ""
    finally:
        store.close()


async def test_cycle_finished_is_published_once_the_cycle_is_stored(tmp_path: Path) -> None:
    seed_settings(tmp_path, {**QUIET, "reading": {"read_at_start": False}})
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=2),)
    stored_when_published: list[int] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = await run_gateway(nursery, StartupConfig(tmp_path, interfaces=interfaces))
            publish = gateway.events.publish

            def watching(event: Event) -> None:
                if event.kind == CYCLE_FINISHED:  # what a subscriber could read at this moment
                    stored_when_published.append(gateway.store.stats().readings)
                publish(event)

            gateway.events.publish = watching  # type: ignore[method-assign]
            await gateway.read_all()
            gateway.stop()
    assert stored_when_published == [2]


async def test_crashed_service_is_restarted_and_reading_goes_on(tmp_path: Path) -> None:
    seed_settings(tmp_path, {**QUIET, "reading": {"read_at_start": False}})
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=2),)
    crashes = []

    async def flaky(*, task_status) -> None:
        task_status.started()
        crashes.append(trio.current_time())
        raise OSError("device unplugged")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = await run_gateway(nursery, StartupConfig(tmp_path, interfaces=interfaces))
            await gateway.supervisor.add(FunctionService("flaky", flaky))
            # the simulated converter drops its connections: the bus master reconnects
            gateway.supervisor.restart(["simulator:a"])
            while len(crashes) < 2:  # crashed, waited its backoff, started again, crashed
                await trio.sleep(0.05)
            result = await gateway.read_all()
            assert not result.failed, [r.error for r in result.failed]
            assert gateway.supervisor.states["flaky"].crashes >= 2
            gateway.stop()
    store = Store.open(store_path(tmp_path), readonly=True)
    try:
        texts = [entry.text for entry in store.system_log()]
    finally:
        store.close()
    assert "service crashed: OSError: device unplugged" in texts


async def test_continuous_mode_reads_into_memory_never_into_the_store(tmp_path: Path) -> None:
    seed_settings(tmp_path, {**QUIET, "reading": {"read_at_start": False, "continuous": True}})
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=3),)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = await run_gateway(nursery, StartupConfig(tmp_path, interfaces=interfaces))
            version = 0
            while version < 9:  # three rounds of three meters
                version = await gateway.live.wait_for_change(version)
            snapshot = gateway.live.all_last_good()
            assert len(snapshot) == 3
            assert all(reading.telegrams for reading in snapshot.values())
            # switching continuous mode off restarts only the services it touches
            await gateway.update_settings({"reading": {"continuous": False}})
            states = gateway.supervisor.states
            while states["continuous"].restarts < 1:
                await trio.sleep(0.01)
            assert gateway.supervisor.states["bus:a"].restarts == 0
            gateway.stop()
    readings, _ = stored(tmp_path)
    assert readings == 0


def test_sigterm_stops_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    seed_settings(tmp_path, {**QUIET, "reading": {"schedule": "* * * * *"}})
    config = tmp_path / "mbusgw.toml"
    config.write_text('[[interfaces]]\nname = "a"\nkind = "simulator"\nbaud = 9600\nmeters = 3\n')
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mbusgw.gateway.cli",
            "run",
            "--data-dir",
            str(tmp_path),
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in process.stdout:  # bounded by the process's own output
            lines.append(line)
            if "read at start" in line:
                break
        os.kill(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, "".join(lines) + output
    assert "SIGTERM: stopping" in output and "gateway: stopped" in output
    readings, logs = stored(tmp_path)
    assert readings == 3 and len(logs) == 3


@pytest.mark.parametrize("fault", ["noise", "flood"])
async def test_a_noisy_line_does_not_hold_up_the_healthy_one(tmp_path: Path, fault: str) -> None:
    seed_settings(tmp_path, {**QUIET, "reading": {"read_at_start": False}})
    interfaces = (
        InterfaceConfig(name="healthy", kind="simulator", baud=9600, meters=3),
        InterfaceConfig(name="noisy", kind="simulator", baud=9600, meters=3),
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = await run_gateway(nursery, StartupConfig(tmp_path, interfaces=interfaces))
            stored_events = gateway.events.subscribe()
            line = gateway.simulators["noisy"].line
            if fault == "noise":
                line.noise = (0.005, 0.05)
            else:
                line.flood = True
            healthy = {m.key for m in gateway.active_meters() if m.interface == "healthy"}
            noisy = {m.key for m in gateway.active_meters() if m.interface == "noisy"}
            errors: list[str] = []
            for _ in range(2):  # and the next cycle runs as well
                result = await gateway.read_all()
                read = {r.meter.key for r in result.readings if r.ok}
                assert healthy <= read
                # noise with pauses now and then may let an answer through: such a read is
                # clean; the others fail, as a noisy line or garbled
                assert {r.meter.key for r in result.failed} | (read - healthy) == noisy
                errors += [r.error or "" for r in result.failed]
                # the healthy line's meters were stored with this cycle
                event = stored_events.receive_nowait()
                while event.kind != "readings_stored":
                    event = stored_events.receive_nowait()
                assert healthy <= set(event.detail["meters"])
            gateway.stop()
    assert all("line noisy" in error or "garbled" in error for error in errors)
    if fault == "flood":  # never a pause: every read ends as a noisy line
        assert len(errors) == 2 * len(noisy) and all("line noisy" in e for e in errors)
    else:
        assert any("line noisy" in error for error in errors)
    store = Store.open(store_path(tmp_path), readonly=True)
    try:
        statuses = [
            ReadingStatus(int(status)) for key in noisy for status in store.meter_log(key).status
        ]
        assert len(statuses) == 2 * len(noisy)
        assert statuses.count(ReadingStatus.COLLISION) == len(errors)
        assert set(statuses) <= {ReadingStatus.COLLISION, ReadingStatus.OK}
    finally:
        store.close()


async def test_health_and_the_meter_log_count_retries_not_requests(tmp_path: Path) -> None:
    seed_settings(tmp_path, {**QUIET, "reading": {"read_at_start": False}})
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=6),)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = await run_gateway(nursery, StartupConfig(tmp_path, interfaces=interfaces))
            result = await gateway.read_all()
            assert not result.failed
            telegrams = {r.meter.key: len(r.frames) for r in result.readings}
            assert max(telegrams.values()) > 1, "the mix has multi-telegram meters"
            # clean reads: SND_NKE and every telegram are requests, none of them a retry
            assert {key: h.last_retries for key, h in gateway.health.items()} == dict.fromkeys(
                telegrams, 0
            )
            simulated = gateway.simulators["a"].line.meters
            simulated[0].ignore_next = 1  # one lost request: one retry
            assert (await gateway.read_meter(simulated[0].identity.id)).ok
            assert gateway.health[simulated[0].identity.id].last_retries == 1
            gateway.stop()
    store = Store.open(store_path(tmp_path), readonly=True)
    try:
        for key in telegrams:
            log = store.meter_log(key)
            expected = [0, 1] if key == simulated[0].identity.id else [0]
            assert log.retries.tolist() == expected, key
    finally:
        store.close()
