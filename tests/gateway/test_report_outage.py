"""A receiver that is unreachable for a day (simulated on MockClock) loses nothing.

Three meters are read every 15 minutes; four HTTP reports (every 15 minutes, hourly, every 6
hours, daily) are synchronised with the reading. The receiver is down for 24 hours and then
comes back: every value produced in between arrives, and while it was down each report run was
tried exactly as table 10 of the manual says (1 × 0 s, 2 × 300 s, 3 × 500 s, 6 × 3600 s).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import trio
from report_receivers import HttpReceiver, free_port, start_http_receiver
from reportkit import METERS, running_service, stored_values, values_of_report
from storekit import ENERGY, FLOW_TEMPERATURE, T0, VOLUME, open_store, trio_clock

from mbusgw.gateway.clock import WallClock, sleep_until_wall
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.events import CYCLE_FINISHED, Event, EventBus
from mbusgw.gateway.store import LogFilter, Store, StoredReading, StoreWriter

START = T0 - 1800  # 23:30 UTC: the daily report is due half an hour later
DOWN_UNTIL = START + 24 * 3600
END = T0 + 48 * 3600 + 1200  # past the second daily report
CYCLE_S = 20  # how long a reading cycle takes
REPORTS = {
    "quarter": ("every_15_minutes", 1, 0),
    "hourly": ("hourly", 2, 300),
    "six": ("every_6_hours", 3, 500),
    "daily": ("daily", 6, 3600),
}


async def read_meters(writer: StoreWriter, clock: WallClock, events: EventBus) -> None:
    """The reading side: a cycle every 15 minutes, stored at its end, then announced."""
    schedule = CronSchedule("every_15_minutes")
    fire = schedule.next_after(clock.now())
    number = 0
    while True:
        await sleep_until_wall(clock, fire)
        started = int(fire.timestamp())
        await trio.sleep(CYCLE_S)
        readings = [
            StoredReading.of(
                meter,
                started + 3 + 5 * m,
                [(ENERGY, 1000 * m + number), (VOLUME, number * 3), (FLOW_TEMPERATURE, 60 + m)],
            )
            for m, meter in enumerate(METERS)
        ]
        await writer.put_readings(readings)
        events.publish(Event(CYCLE_FINISHED, clock.now(), None, {"meters": len(METERS)}))
        number += 1
        fire = schedule.next_after(fire)


def attempts(store: Store, name: str) -> dict[str, list[float]]:
    """Attempt times of each run of a report, from its system log lines."""
    runs: dict[str, list[float]] = {}
    for entry in store.system_log(LogFilter(origin=f"report:{name}")):
        found = re.match(r"run (\S+), attempt (\d+)/(\d+): (not )?delivered", entry.text)
        if found:
            runs.setdefault(found[1], []).append(entry.time)
    return runs


async def test_a_day_without_receiver_loses_nothing(tmp_path: Path, autojump_clock) -> None:
    clock = trio_clock(START)
    store = open_store(tmp_path, clock)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store.update_settings(
        {
            "reports": {
                "timeouts": {"http_s": 30},
                "reports": {
                    name: {"schedule": schedule, "template": 3101, "http": {"uri": f"{url}/{name}"}}
                    for name, (schedule, _, _) in REPORTS.items()
                },
            }
        }
    )
    events = EventBus()
    receiver = HttpReceiver()
    async with running_service(store, clock, in_thread=False, start=True, events=events) as service:
        writer = service.runner.writer
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_meters, writer, clock, events)
            await sleep_until_wall(clock, dt.datetime.fromtimestamp(DOWN_UNTIL, dt.UTC))
            assert receiver.requests == []
            down = {name: service.status_of(name) for name in REPORTS}
            assert all(s.code == 3 and s.values_pending > 0 for s in down.values())
            stop = await start_http_receiver(nursery, receiver, port=port)
            await sleep_until_wall(clock, dt.datetime.fromtimestamp(END, dt.UTC))
            stop.set()
            nursery.cancel_scope.cancel()
        await writer.flush()
        statuses = {name: service.status_of(name) for name in REPORTS}

    for name, (_, retries, offset) in REPORTS.items():
        bodies = [r.body for r in receiver.requests if r.path == f"/{name}"]
        received = set().union(*(values_of_report(body) for body in bodies))
        cursor = store.record("cursors", name)
        # everything stored before the last delivered report's end arrived
        assert stored_values(store, until=cursor["until"]) <= received
        assert statuses[name].code == 1 and statuses[name].values_pending == 0
        # the readings of the outage are covered: the last delivery is past it
        assert cursor["until"] > DOWN_UNTIL + 3600
        runs = attempts(store, name)
        failed = {run: times for run, times in runs.items() if times[-1] < DOWN_UNTIL}
        assert failed, name
        for run, times in failed.items():
            assert len(times) == retries + 1, (name, run, times)
            gaps = [round(b - a) for a, b in zip(times, times[1:], strict=False)]
            assert gaps == [offset] * retries, (name, run, gaps)
