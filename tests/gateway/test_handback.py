"""The hand-back from the line threads to trio: every call runs in trio, in the order the
threads made it; what may wait waits for the next tick, what must not asks trio at once."""

from __future__ import annotations

import random
import threading

import pytest
import trio
import trio.testing

from mbusgw.gateway import handback
from mbusgw.gateway.handback import HandBack


async def test_calls_from_several_threads_run_in_trio_in_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handback, "HAND_BACK_INTERVAL", 0.01)
    hand_back = HandBack.shared()
    trio_thread = threading.get_ident()
    ran: list[tuple[int, int]] = []
    in_trio: set[bool] = set()

    def record(source: int, n: int) -> None:
        in_trio.add(threading.get_ident() == trio_thread)
        ran.append((source, n))

    def make_calls(source: int) -> None:
        urgent = random.Random(source)
        for n in range(300):
            hand_back.call(record, source, n, urgent=urgent.random() < 0.1)
        hand_back.call(record, source, 300)  # the last one asks trio at once

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for source in (1, 2, 3):
                    nursery.start_soon(trio.to_thread.run_sync, make_calls, source)
            while len(ran) < 3 * 301:
                await trio.sleep(0.01)
    finally:
        hand_back.release()
    assert in_trio == {True}
    for source in (1, 2, 3):
        assert [n for s, n in ran if s == source] == list(range(301))


async def test_a_call_that_may_wait_waits_for_the_tick(
    mock_clock: trio.testing.MockClock,
) -> None:
    hand_back = HandBack.shared()
    ran: list[str] = []

    async def from_a_thread(name: str, urgent: bool) -> None:
        # the call's own delivery is asked before the thread's return is: it runs first
        await trio.to_thread.run_sync(lambda: hand_back.call(ran.append, name, urgent=urgent))
        await trio.testing.wait_all_tasks_blocked()

    interval = handback.HAND_BACK_INTERVAL
    try:
        await from_a_thread("first after a quiet spell", urgent=False)
        assert ran == ["first after a quiet spell"]  # at once: nothing was ticking
        await from_a_thread("soon after", urgent=False)
        assert ran[-1] == "soon after"  # at once too, and from now on the task ticks
        await from_a_thread("waits", urgent=False)
        assert ran[-1] == "soon after"  # the clock stands still
        mock_clock.jump(interval)
        await trio.testing.wait_all_tasks_blocked()
        assert ran[-1] == "waits"
        await from_a_thread("waits too", urgent=False)
        await from_a_thread("urgent", urgent=True)
        assert ran[-2:] == ["waits too", "urgent"]  # taken along, in order
        for _ in range(2):  # a tick that finds nothing: the task goes quiet
            mock_clock.jump(interval)
            await trio.testing.wait_all_tasks_blocked()
        await from_a_thread("after the next quiet spell", urgent=False)
        assert ran[-1] == "after the next quiet spell"
        mock_clock.jump(interval)
        await trio.testing.wait_all_tasks_blocked()
        await from_a_thread("seldom", urgent=False)  # an interval after the last: at once
        assert ran[-1] == "seldom"
    finally:
        hand_back.release()
    assert ran == [
        "first after a quiet spell",
        "soon after",
        "waits",
        "waits too",
        "urgent",
        "after the next quiet spell",
        "seldom",
    ]


async def test_the_last_release_delivers_and_a_later_user_gets_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handback, "HAND_BACK_INTERVAL", 60.0)
    first, second = HandBack.shared(), HandBack.shared()
    assert first is second
    ran: list[int] = []
    for n in (1, 2, 3):
        await trio.to_thread.run_sync(lambda n=n: first.call(ran.append, n, urgent=False))
        await trio.testing.wait_all_tasks_blocked()
    assert ran == [1, 2]  # the third waits for a tick a minute away
    first.release()
    assert ran == [1, 2, 3]  # a release delivers what is in hand
    second.release()
    again = HandBack.shared()
    assert again is not first
    again.release()
