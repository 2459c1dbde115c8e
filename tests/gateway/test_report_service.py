"""The report service on MockClock: synchronised and cron schedules, event reports, on-demand
and test reports, status, retry policies and the meter-not-seen watch."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import trio
from report_receivers import HttpReceiver, start_http_receiver
from reportkit import METERS, csv_records, running_service, values_of_report
from storekit import ENERGY, T0, FixedClock, open_store, trio_clock

from mbusgw.gateway.clock import sleep_until_wall
from mbusgw.gateway.errors import DeliveryError, ReportError, UnknownReport
from mbusgw.gateway.events import (
    CYCLE_FINISHED,
    DEVICE_STARTED,
    METER_FAILED,
    METER_RECOVERED,
    READINGS_STORED,
    Event,
    EventBus,
)
from mbusgw.gateway.services.reports.retries import adaptive, policy_for
from mbusgw.gateway.services.reports.runner import ReportRunner
from mbusgw.gateway.services.reports.schedule import last_fire, report_schedule
from mbusgw.gateway.settings import Settings
from mbusgw.gateway.store import StoredReading, StoreWriter

START = T0 + 60  # 00:01 UTC


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def http_reports(url: str, **reports: dict) -> dict:
    return {
        "reports": {
            "reports": {
                name: {"template": 3101, "http": {"uri": f"{url}/{name}"}} | report
                for name, report in reports.items()
            }
        }
    }


async def store_cycle(writer: StoreWriter, received: int, number: int) -> None:
    await writer.put_readings(
        [
            StoredReading.of(meter, received + m, [(ENERGY, 100 * m + number)])
            for m, meter in enumerate(METERS)
        ]
    )


def scheduled(tmp_path: Path, url: str, start: float = START, **reports: dict):
    """A trio wall clock from ``start`` and a store with the given HTTP reports."""
    clock = trio_clock(start)
    store = open_store(tmp_path, clock)
    store.update_settings(http_reports(url, **reports))
    return clock, store


@pytest.fixture
async def receiver(nursery):
    receiver = HttpReceiver()
    stop = await start_http_receiver(nursery, receiver)
    yield receiver
    stop.set()


async def test_a_predefined_schedule_waits_for_the_reading(
    tmp_path: Path, autojump_clock, receiver
) -> None:
    clock, store = scheduled(tmp_path, receiver.url, q={"schedule": "every_15_minutes"})
    events = EventBus()
    async with running_service(store, clock, in_thread=False, start=True, events=events) as service:
        assert service.status_of("q").next_run == at(T0 + 900)
        await sleep_until_wall(clock, at(T0 + 900 + 240))  # the cycle of 00:15 takes 4 minutes
        assert service.status_of("q").state == "waiting_for_reading"
        assert receiver.requests == []
        await store_cycle(service.runner.writer, T0 + 905, 1)
        events.publish(Event(CYCLE_FINISHED, clock.now()))
        await sleep_until_wall(clock, at(T0 + 900 + 250))
        status = service.status_of("q")
    [request] = receiver.requests
    assert len(values_of_report(request.body)) == len(METERS)  # the reading it waited for
    assert status.last_success == at(T0 + 900 + 240) and status.next_run == at(T0 + 1800)


async def test_a_reading_that_never_finishes_delays_the_report_one_read_period(
    tmp_path: Path, autojump_clock, receiver
) -> None:
    clock, store = scheduled(tmp_path, receiver.url, h={"schedule": "hourly"})
    async with running_service(store, clock, in_thread=False, start=True) as service:
        await sleep_until_wall(clock, at(T0 + 3600 + 901))
        status = service.status_of("h")
    assert status.last_success == at(T0 + 3600 + 900)  # the read period (15 min) after 01:00
    [warning] = [e for e in store.system_log() if "did not finish" in e.text]
    assert warning.origin == "report:h"


async def test_a_cron_schedule_does_not_wait(tmp_path: Path, autojump_clock, receiver) -> None:
    clock, store = scheduled(tmp_path, receiver.url, c={"schedule": "*/15 * * * *"})
    async with running_service(store, clock, in_thread=False, start=True) as service:
        await sleep_until_wall(clock, at(T0 + 901))
        status = service.status_of("c")
    assert status.last_success == at(T0 + 900)
    assert len(receiver.requests) == 1


async def test_event_reports_gather_events(tmp_path: Path, autojump_clock, receiver) -> None:
    clock, store = scheduled(
        tmp_path,
        receiver.url,
        all={"kind": "event", "template": 3230},
        failures={"kind": "event", "template": 3201, "events": "meter_failed"},
    )
    events = EventBus()
    async with running_service(
        store, clock, in_thread=False, events=events, event_hold_s=10
    ) as service:
        events.publish(Event(DEVICE_STARTED, clock.now()))  # before the service runs
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            for meter in METERS:
                events.publish(Event(METER_FAILED, clock.now(), meter, {"error": "no response"}))
                await trio.sleep(2)
            events.publish(Event(METER_RECOVERED, clock.now(), "m1"))
            events.publish(Event(READINGS_STORED, clock.now(), None, {"meters": ["m1"]}))
            events.publish(Event(CYCLE_FINISHED, clock.now()))
            await trio.sleep(30)
            nursery.cancel_scope.cancel()
    by_path = {r.path.rsplit("/", 1)[1]: r for r in receiver.requests}
    assert sorted(by_path) == ["all", "failures"]
    document = json.loads(by_path["all"].body)
    assert [e["event"] for e in document["events"]] == [
        DEVICE_STARTED,
        METER_FAILED,
        METER_FAILED,
        METER_FAILED,
        METER_RECOVERED,
    ]
    _, _, rows = csv_records(by_path["failures"].body)
    assert [row[1] for row in rows] == [METER_FAILED] * 3 and [row[3] for row in rows] == list(
        METERS
    )


async def test_undelivered_events_go_with_the_next_event_report(
    tmp_path: Path, autojump_clock, receiver
) -> None:
    clock, store = scheduled(
        tmp_path, receiver.url, e={"kind": "event", "template": 3230, "retries": 0}
    )
    events = EventBus()
    receiver.status = 503
    async with running_service(store, clock, in_thread=False, events=events, start=True) as service:
        events.publish(Event(METER_FAILED, clock.now(), "m1"))
        await trio.sleep(60)
        assert service.status_of("e").code == 3 and service.status_of("e").values_pending == 1
        receiver.status = 200
        events.publish(Event(METER_RECOVERED, clock.now(), "m1"))
        await trio.sleep(60)
    [request] = receiver.requests
    assert [e["event"] for e in json.loads(request.body)["events"]] == [
        METER_FAILED,
        METER_RECOVERED,
    ]


async def test_a_failed_report_raises_a_report_failed_event(
    tmp_path: Path, autojump_clock, receiver
) -> None:
    clock, store = scheduled(
        tmp_path,
        receiver.url,
        q={"schedule": "*/15 * * * *"},
        alarm={"kind": "event", "template": 3201},
    )
    store.update_settings({"reports": {"reports": {"q": {"http": {"uri": "http://127.0.0.1:9/"}}}}})
    async with running_service(store, clock, in_thread=False, start=True) as service:
        await sleep_until_wall(clock, at(T0 + 960))
        assert service.status_of("q").code == 3
    [request] = receiver.requests
    _, _, rows = csv_records(request.body)
    assert rows[0][1] == "report_failed" and '"report": "q"' in rows[0][4]


async def test_on_demand_reads_first(tmp_path: Path, autojump_clock, receiver) -> None:
    clock, store = scheduled(tmp_path, receiver.url, now={"kind": "on_demand"})
    calls = []

    async def read_all() -> None:
        calls.append(clock.now())
        await trio.sleep(30)  # a reading cycle
        await store_cycle(writer, int(clock.now().timestamp()) - 5, 7)

    async with running_service(store, clock, in_thread=False, read_all=read_all) as service:
        writer = service.runner.writer
        outcome = await service.run_on_demand("now")
        await writer.update_settings(http_reports(receiver.url, other={}))
        with pytest.raises(UnknownReport, match="on_demand"):
            await service.run_on_demand("other")
    assert calls == [at(START)]
    assert outcome.ok and outcome.values == len(METERS)
    [request] = receiver.requests
    assert {v[3] for v in values_of_report(request.body)} == {"7", "107", "207"}


async def test_on_demand_without_reading_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path, FixedClock(START))
    store.update_settings(http_reports("http://127.0.0.1:9", now={"kind": "on_demand"}))
    async with running_service(store, store.clock) as service:
        with pytest.raises(ReportError, match="cannot read"):
            await service.run_on_demand("now")


async def test_test_reports_do_not_move_the_cursor(
    tmp_path: Path, autojump_clock, receiver
) -> None:
    clock, store = scheduled(tmp_path, receiver.url, q={})
    async with running_service(store, clock, in_thread=False) as service:
        await store_cycle(service.runner.writer, T0, 1)
        outcome = await service.send_test("q")
        download = await service.render_test("q")
        data = download.data()
        download.close()
        status = service.status_of("q")
    assert outcome.ok and store.record("cursors", "q") is None
    preamble, _, rows = csv_records(receiver.requests[0].body)
    assert "test report" in preamble and len(rows) == len(METERS)
    assert download.filename.endswith("_test.csv") and data.startswith(b"#device;mbusgw")
    assert status.last_success is None and status.last_reply == "200 OK"


async def test_status_of_every_report(tmp_path: Path) -> None:
    store = open_store(tmp_path, FixedClock(START))
    store.update_settings(
        http_reports(
            "http://127.0.0.1:9",
            q={},
            off={"enabled": False},
            ev={"kind": "event", "template": 3201},
        )
    )
    async with running_service(store, store.clock, start=True) as service:
        statuses = {s.name: s for s in service.status()}
        with pytest.raises(UnknownReport):
            service.status_of("missing")
    assert sorted(statuses) == ["ev", "off", "q"]
    assert statuses["off"].state == "disabled" and statuses["q"].code == 2
    assert statuses["q"].as_dict()["next_run"] == "2023-11-15T00:15:00+00:00"
    assert statuses["ev"].protocol == "http" and statuses["ev"].kind == "event"


# -- policies and schedules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "retries", "offset"),
    [
        (1, 1, 0),
        (15, 1, 0),
        (16, 2, 300),
        (60, 2, 300),
        (61, 3, 500),
        (23 * 60, 3, 500),
        (1440, 6, 3600),
    ],
)
def test_adaptive_retry_table(minutes: int, retries: int, offset: int) -> None:
    policy = adaptive(minutes * 60)
    assert (policy.retries, policy.offset_s) == (retries, offset)


def test_without_adaptive_retries_the_own_or_the_job_settings_apply() -> None:
    settings = Settings().updated(
        {
            "jobs": {"max_retries": 4, "retry_offset_s": 120},
            "reports": {"adaptive_retries": False, "http": {"uri": "http://x.example.com/"}},
        }
    )
    own = settings.updated(
        {"reports": {"reports": {"r": {"template": 3101, "retries": 1, "retry_offset_s": 7}}}}
    )
    plain = settings.updated({"reports": {"reports": {"r": {"template": 3101}}}})
    mine = policy_for(own.reports.reports["r"], own, 3600)
    assert (mine.retries, mine.offset_s) == (1, 7)
    general = policy_for(plain.reports.reports["r"], plain, 3600)
    assert (general.retries, general.offset_s) == (4, 120)


def test_weekly_reports_start_the_week_on_the_first_day() -> None:
    wednesday = at(T0)
    assert report_schedule("weekly", "monday", "r").next_after(wednesday).weekday() == 0
    assert report_schedule("weekly", "sunday", "r").next_after(wednesday).weekday() == 6
    every = report_schedule("every_15_minutes", "monday", "r")
    assert last_fire(every, at(T0 + 905)) == at(T0 + 900)
    assert last_fire(every, at(T0 + 900)) == at(T0 + 900)


async def test_a_receiver_that_does_not_answer_times_out(
    tmp_path: Path, autojump_clock, receiver
) -> None:
    clock, store = scheduled(tmp_path, receiver.url, q={})
    store.update_settings({"reports": {"timeouts": {"http_s": 30}}})
    receiver.delay = 120
    async with running_service(store, clock, in_thread=False) as service:
        started = trio.current_time()
        with pytest.raises(DeliveryError, match="no answer within 30 s"):
            await service.runner.attempt("q")
        assert trio.current_time() - started == pytest.approx(30)
    assert store.record("cursors", "q") is None


def test_auto_value_period_is_180_cycles_of_reading_or_report() -> None:
    settings = Settings().updated(
        {
            "reading": {"schedule": "every_15_minutes"},
            "reports": {
                "http": {"uri": "http://x.example.com/"},
                "reports": {
                    "q": {"template": 3101, "schedule": "every_15_minutes"},
                    "d": {"template": 3101, "schedule": "daily"},
                    "f": {"template": 3101, "value_period": "6h"},
                    "o": {"template": 3101, "kind": "on_demand"},
                },
            },
        }
    )
    runner = ReportRunner(None, None, lambda: settings, FixedClock(T0))  # type: ignore[arg-type]
    now = at(T0 + 100)
    periods = {
        name: runner.value_period(config, settings, now)
        for name, config in settings.reports.reports.items()
    }
    assert periods == {"q": 180 * 900, "d": 180 * 86_400, "f": 6 * 3600, "o": 180 * 900}
