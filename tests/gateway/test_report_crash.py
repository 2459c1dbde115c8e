"""At least once, never a gap: a crash between a delivery and its cursor commit makes the same
values go out again, and a cursor commit that fails counts as a failed delivery."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from report_receivers import HttpReceiver, start_http_receiver
from reportkit import METERS, filled_store, running_service, stored_values, values_of_report
from storekit import T0, FixedClock, heat_reading

from mbusgw.gateway.errors import StoreFull
from mbusgw.gateway.store import Store, StoreWriter

CHILD = Path(__file__).with_name("crash_reporter.py")
NOW = T0 + 8 * 900


@contextlib.asynccontextmanager
async def receiving(tmp_path: Path) -> AsyncIterator[tuple[Store, HttpReceiver, trio.Nursery]]:
    """A store with readings and report "push" to a running HTTP receiver."""
    store = filled_store(tmp_path, FixedClock(NOW))
    receiver = HttpReceiver()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            stop = await start_http_receiver(nursery, receiver)
            push = {"template": 3101, "http": {"uri": receiver.url}}
            store.update_settings({"reports": {"reports": {"push": push}}})
            yield store, receiver, nursery
            stop.set()


async def test_killed_between_send_and_commit_sends_again(tmp_path: Path) -> None:
    async with receiving(tmp_path) as (store, receiver, _):
        child = await trio.run_process(
            [sys.executable, str(CHILD), str(store.path), str(NOW)],
            cwd=CHILD.parent,
            capture_stdout=True,
            check=False,
        )
        assert child.returncode == -signal.SIGKILL, child
        assert child.stdout.decode().split() == ["SENT"]
        assert len(receiver.requests) == 1  # the receiver got the report ...
        assert store.record("cursors", "push") is None  # ... but the cursor never moved

        # restart: the same values go out again, then the cursor moves
        clock = store.clock
        async with running_service(store, clock) as service:
            await service.runner.attempt("push")
            first, again = (values_of_report(r.body) for r in receiver.requests)
            assert first == again == stored_values(store)
            assert store.record("cursors", "push") is not None

            # the next report carries exactly what came after: no gap, no repeat
            clock.time = NOW + 900
            new = [heat_reading(m, 8, frames=[b"\x68"]) for m in METERS]
            await service.runner.writer.put_readings(new)
            await service.runner.attempt("push")
    third = values_of_report(receiver.requests[2].body)
    assert third == stored_values(store) - first
    assert {t for _, _, t, _ in third} == {T0 + 8 * 900 + 7}


class FailingCommits(StoreWriter):
    """A writer whose cursor commits fail while ``failing`` is set (a full disk, say)."""

    failing = True

    async def put_record(self, table: str, name: str, record: object) -> None:
        if table == "cursors" and self.failing:
            raise StoreFull("no space left for the cursor")
        await super().put_record(table, name, record)


async def test_a_failed_cursor_commit_is_a_failed_delivery(tmp_path: Path) -> None:
    async with receiving(tmp_path) as (store, receiver, _):
        writer = FailingCommits(store)
        async with running_service(store, store.clock, writer=writer) as service:
            with pytest.raises(StoreFull):
                await service.runner.attempt("push")
            status = service.status_of("push")
            assert status.code == 3 and status.values_pending == len(stored_values(store))
            writer.failing = False
            await service.runner.attempt("push")
    first, again = (values_of_report(r.body) for r in receiver.requests)
    assert first == again == stored_values(store)
    assert store.record("cursors", "push")["meters"] == {m: NOW - 900 + 7 for m in METERS}
