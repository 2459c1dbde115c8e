"""Handing what the line threads finished back to trio, for every line of the gateway at once.

Waking trio costs its thread more than the work a reading leaves it (a ``run_sync_soon`` with a
callback that does nothing costs 70-180 µs; health, events and the snapshot's waiters take less),
so every line's thread hands its calls to one ``HandBack`` of the trio run, and one trio wake-up
runs all that were handed over since the last, in the order they were handed over. A call that
must not wait (a request's reply, a round's end, a failed read) asks trio at once, taking
those before it along; the others are delivered by a trio task every ``HAND_BACK_INTERVAL``
while they keep coming: its sleep is the wake-up, so no thread has to wake to time it. When they
come seldom (a line or two) the task is idle and each is delivered at once, one wake-up each as
before: ticking for them would add an empty tick per call.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from typing import Any

import trio

# How long a reading's trio side (health, events, waking the snapshot's waiters) may wait: a
# quarter of a second keeps a meter's events well within the event stream's one second, and
# with eight lines reading about 15 meters a second trio wakes four times a second, not fifteen.
HAND_BACK_INTERVAL = 0.25

_SHARED: trio.lowlevel.RunVar[HandBack] = trio.lowlevel.RunVar("mbusgw_hand_back")


class HandBack:
    """Calls made from any thread, run in trio in the order they were made."""

    def __init__(self, token: trio.lowlevel.TrioToken, interval: float) -> None:
        self._token = token
        self._interval = interval
        self._lock = threading.Lock()
        self._calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._asked = False  # trio is asked to deliver (and has not yet)
        self._ticking = False  # the trio task delivers every interval
        self._resume = trio.Event()  # set to start the idle task ticking again
        self._users = 0
        self._cancel = trio.CancelScope()
        self._clock = trio.lowlevel.current_clock()  # readable from the line threads
        self._delivered_at = -math.inf  # when calls were last delivered (trio time)

    @classmethod
    def shared(cls) -> HandBack:
        """In trio: the run's hand-back, for one more user (give it back with ``release``)."""
        hand_back = _SHARED.get(None)
        if hand_back is None or hand_back._cancel.cancel_called:
            hand_back = cls(trio.lowlevel.current_trio_token(), HAND_BACK_INTERVAL)
            _SHARED.set(hand_back)
            trio.lowlevel.spawn_system_task(hand_back._tick, name="hand back")
        hand_back._users += 1
        return hand_back

    def release(self) -> None:
        """In trio: one user less; what was handed over is delivered, and the last user's
        release stops the task."""
        self.deliver()
        self._users -= 1
        if not self._users:
            self._cancel.cancel()

    def call(self, function: Callable[..., Any], *args: Any, urgent: bool = True) -> None:
        """From any thread: run ``function(*args)`` in trio, at once if ``urgent``, else within
        the interval. It must not raise (it would end the trio run)."""
        with self._lock:
            self._calls.append((function, args))
            if self._asked or (self._ticking and not urgent):
                return
            self._asked = True
            # a call that may wait while the task is idle is delivered at once; if calls were
            # delivered less than an interval ago, they come often: the task ticks from now on
            since = self._clock.current_time() - self._delivered_at
            resume = not urgent and since < self._interval
            self._ticking = self._ticking or resume
        with contextlib.suppress(trio.RunFinishedError):  # over: nobody left to deliver to
            self._token.run_sync_soon(self._resume_ticking if resume else self.deliver)

    def deliver(self) -> int:
        """In trio: run everything handed over so far, in order; returns how many."""
        with self._lock:
            batch, self._calls = self._calls, []
            self._asked = False
            if batch:
                self._delivered_at = self._clock.current_time()
        for function, args in batch:
            function(*args)
        return len(batch)

    def _resume_ticking(self) -> None:
        self.deliver()
        self._resume.set()

    async def _tick(self) -> None:
        """Delivers every interval while calls keep coming; idle once one brought none, and
        idle from the start."""
        with self._cancel:
            while True:
                await self._resume.wait()
                while True:
                    await trio.sleep(self._interval)
                    if self.deliver():
                        continue
                    with self._lock:
                        if self._calls:
                            continue
                        self._ticking = False
                    break
                self._resume = trio.Event()
