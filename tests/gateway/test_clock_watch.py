"""Wall-clock jumps and drift: the clock watch logs them (under MockClock, and with a real
wall clock given an offset), schedules keep firing once per scheduled time across jumps both
ways, and a reading keeps the meter's own time beside the reception time."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from gatewaykit import seed_settings

from mbusgw.core.units import ValueKind
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.clock import SystemClock, TrioWallClock, WallClock
from mbusgw.gateway.clock_watch import CLOCK_DRIFTED, CLOCK_JUMPED, ClockWatch
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.events import EventBus
from mbusgw.gateway.parts import Shared
from mbusgw.gateway.scheduler import ScheduledJob
from mbusgw.gateway.settings import ConfigError, InterfaceConfig, Settings, StartupConfig
from mbusgw.gateway.sntp import NTP_TO_UNIX, SntpCheck


class SteppedClock:
    """A wall clock plus an offset the test steps, as an operator or NTP sets the clock."""

    def __init__(self, base: WallClock) -> None:
        self.base = base
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self.base.now() + self.offset


def shared(clock: WallClock, settings: Settings) -> tuple[Shared, list[tuple[int, str, str]]]:
    entries: list[tuple[int, str, str]] = []

    def log(level: int, origin: str, text: str) -> None:
        entries.append((level, origin, text))

    def no_writer() -> Any:
        raise AssertionError("the clock watch writes nothing to the store")

    return Shared(clock, EventBus(), log, lambda: settings, no_writer), entries


def texts(entries: list[tuple[int, str, str]]) -> list[str]:
    return [text for _, origin, text in entries if origin == "clock-watch"]


async def test_jumps_both_ways_and_drift_are_logged_under_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = SteppedClock(TrioWallClock(datetime(2026, 3, 2, 10, 0, tzinfo=UTC)))
    settings = Settings().updated({"time": {"max_drift_s": 5, "check_interval_s": 60}})
    parts, entries = shared(clock, settings)
    events = parts.events.subscribe()
    watch = ClockWatch(parts)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        await trio.sleep(121)
        assert watch.steps == []
        clock.offset += timedelta(hours=1)
        await trio.sleep(60)
        clock.offset -= timedelta(hours=2)
        await trio.sleep(60)
        for _ in range(3):  # 2 s a minute: each step within bounds, together beyond
            clock.offset += timedelta(seconds=2)
            await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert [(s.kind, round(s.seconds)) for s in watch.steps] == [
        (CLOCK_JUMPED, 3600),
        (CLOCK_JUMPED, -7200),
        (CLOCK_DRIFTED, 6),
    ]
    logged = texts(entries)
    assert logged[1].startswith("wall clock jumped forward by 3600.0 s against the monotonic")
    assert logged[2].startswith("wall clock jumped back by 7200.0 s")
    assert logged[3].startswith("wall clock drifted forward by 6.0 s")
    kinds = [events.receive_nowait() for _ in range(3)]
    assert [(e.kind, round(e.detail["seconds"])) for e in kinds] == [
        (CLOCK_JUMPED, 3600),
        (CLOCK_JUMPED, -7200),
        (CLOCK_DRIFTED, 6),
    ]


async def test_a_real_wall_clock_given_an_offset_is_caught() -> None:
    clock = SteppedClock(SystemClock())
    settings = Settings().updated({"time": {"max_drift_s": 5, "check_interval_s": 1}})
    parts, entries = shared(clock, settings)
    watch = ClockWatch(parts)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(watch.run)
            clock.offset = timedelta(seconds=120)
            while len(watch.steps) < 1:
                await trio.sleep(0.1)
            clock.offset = timedelta(0)
            while len(watch.steps) < 2:
                await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    assert [round(step.seconds) for step in watch.steps] == [120, -120]
    assert texts(entries)[2].startswith("wall clock jumped back by 120")


async def test_a_schedule_fires_once_per_time_across_jumps_both_ways(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = SteppedClock(TrioWallClock(datetime(2026, 3, 2, 10, 5, tzinfo=UTC)))
    runs: list[tuple[datetime, datetime]] = []  # (scheduled time, wall time of the run)
    logged: list[str] = []

    async def job(fire: datetime) -> None:
        runs.append((fire, clock.now()))

    scheduled = ScheduledJob(
        "job",
        CronSchedule("*/15 * * * *"),
        job,
        clock=clock,
        zone=UTC,
        log=lambda level, origin, text: logged.append(text),
    )

    def at(hour: int, minute: int) -> datetime:
        return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)

    async with trio.open_nursery() as nursery:
        await nursery.start(scheduled.run)
        await trio.sleep(11 * 60)  # 10:16
        clock.offset += timedelta(hours=1)  # 11:16: 10:30 and later are past
        await trio.sleep(15 * 60)  # 11:31
        clock.offset -= timedelta(hours=1)  # 10:31 again
        await trio.sleep(90 * 60)  # 12:01 on the clock
        nursery.cancel_scope.cancel()
    fires = [fire for fire, _ in runs]
    assert fires == [at(10, 15), at(10, 30), at(11, 30), at(11, 45), at(12, 0)]
    assert len(set(fires)) == len(fires)  # the repeated hour runs nothing twice
    late = runs[1][1]
    assert at(11, 16) <= late < at(11, 18)  # the missed time runs once, at once
    assert any("skipped 3 scheduled time(s)" in text for text in logged)
    assert all(fire <= wall < fire + timedelta(minutes=2) for fire, wall in runs[2:])


@pytest.mark.parametrize("offset_days", [3, -3])
async def test_a_reading_keeps_the_meter_time_and_the_reception_time(
    tmp_path: Path, offset_days: int
) -> None:
    seed_settings(tmp_path, {"modbus": {"enabled": False}, "reading": {"read_at_start": False}})
    clock = SteppedClock(SystemClock())
    clock.offset = timedelta(days=offset_days)
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=2),)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = await run_gateway_with(nursery, tmp_path, interfaces, clock)
            before = clock.now()
            result = await gateway.read_all()
            after = clock.now()
            assert gateway.writer is not None and gateway.store is not None
            await gateway.writer.flush()
            table = gateway.store.latest([r.meter.key for r in result.readings])
            received = {int(table.received_at[i]) for i in range(len(table))}
            assert received and all(
                int(before.timestamp()) <= at <= after.timestamp() + 1 for at in received
            )
            meter_times = [
                table.value(i) for i in range(len(table)) if table.kind[i] == ValueKind.DATETIME
            ]
            assert meter_times, "the simulated meters send their own date and time"
            for meter_time in meter_times:  # the meter's clock, not the gateway's
                assert abs(meter_time.replace(tzinfo=UTC) - before) > timedelta(days=2)
            gateway.stop()


async def run_gateway_with(
    nursery: trio.Nursery, data_dir: Path, interfaces: tuple[InterfaceConfig, ...], clock: Any
) -> Gateway:
    gateway = Gateway(StartupConfig(data_dir, interfaces=interfaces), clock=clock, northbound=[])
    await nursery.start(gateway.run)
    return gateway


async def test_an_sntp_server_ahead_of_the_wall_clock_is_reported() -> None:
    """A real SNTP exchange over loopback UDP with a server 30 s ahead, and one that stays
    silent."""
    ahead = 30.0
    settings = Settings()
    clock = SystemClock()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await server.bind(("127.0.0.1", 0))
            silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await silent.bind(("127.0.0.1", 0))

            async def answer() -> None:
                while True:
                    request, peer = await server.recvfrom(512)
                    assert len(request) == 48 and request[0] & 7 == 3
                    now = clock.now().timestamp() + ahead + NTP_TO_UNIX
                    stamp = struct.pack("!II", int(now), int((now % 1) * 2**32))
                    head = bytes([0x24, 2, 0, 0]) + bytes(20) + request[40:48]
                    await server.sendto(head + stamp + stamp, peer)

            nursery.start_soon(answer)
            with pytest.raises(ConfigError) as refused:
                settings.updated({"time": {"sntp_servers": "ntp.example:99999"}})
            assert refused.value.errors == {
                "time.sntp_servers": "'ntp.example:99999' is not a host or host:port"
            }
            servers = f"127.0.0.1:{server.getsockname()[1]} 127.0.0.1:{silent.getsockname()[1]}"
            settings = settings.updated({"time": {"sntp_servers": servers}})
            parts, entries = shared(clock, settings)
            check = SntpCheck(parts)
            check.timeout_s = 0.5  # the silent server: no need to wait the full 5 s
            status = await check.check()
            nursery.cancel_scope.cancel()
    (offset,) = status.offsets.values()
    assert abs(offset - ahead) < 1.0
    (error,) = status.errors.values()
    assert "no answer within 0.5 s" in error
    warnings = [text for level, origin, text in entries if origin == "sntp-check"]
    assert warnings[0].startswith("wall clock 30.") and "s behind 127.0.0.1:" in warnings[0]
    assert warnings[1].startswith("SNTP query failed: 127.0.0.1:")
