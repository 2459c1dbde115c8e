"""Handing what the line threads finished back to trio, for every line of the gateway at once.

Waking trio costs its thread more than the work a reading leaves it (a ``run_sync_soon`` with a
callback that does nothing costs 70-180 µs; health, events and the snapshot's waiters take less),
so every line's thread hands its calls to one ``HandBack`` of the trio run, and one trio wake-up
runs all that were handed over since the last, in the order they were handed over. A call that
must not wait (a request's reply, a failed read, a caller's callback) asks trio at once, taking
those before it along; the others wait at most ``HAND_BACK_INTERVAL`` for a wake-up, which a
timer thread asks for when nothing else did.
"""

from __future__ import annotations

import contextlib
import threading
import time
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
        self._due_changed = threading.Condition(self._lock)
        self._calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._asked = False  # trio is asked to deliver (and has not yet)
        self._due: float | None = None  # when the oldest waiting call must be delivered
        self._closed = False
        self._users = 0
        self._timer = threading.Thread(target=self._keep_time, name="hand back", daemon=True)
        self._timer.start()

    @classmethod
    def shared(cls) -> HandBack:
        """In trio: the run's hand-back, for one more user (give it back with ``release``)."""
        hand_back = _SHARED.get(None)
        if hand_back is None or hand_back._closed:
            hand_back = cls(trio.lowlevel.current_trio_token(), HAND_BACK_INTERVAL)
            _SHARED.set(hand_back)
        hand_back._users += 1
        return hand_back

    def release(self) -> None:
        """In trio: one user less; what was handed over is delivered, and the last user's
        release stops the timer."""
        self.deliver()
        self._users -= 1
        if self._users:
            return
        with self._lock:
            self._closed = True
            self._due_changed.notify()
        self._timer.join()

    def call(self, function: Callable[..., Any], *args: Any, urgent: bool = True) -> None:
        """From any thread: run ``function(*args)`` in trio, at once if ``urgent``, else within
        the interval. It must not raise (it would end the trio run)."""
        with self._lock:
            self._calls.append((function, args))
            if self._asked:
                return
            if not urgent:
                if self._due is None:
                    self._due = time.monotonic() + self._interval
                    self._due_changed.notify()
                return
            self._asked = True
        self._ask_trio()

    def deliver(self) -> None:
        """In trio: run everything handed over so far, in order."""
        with self._lock:
            batch, self._calls = self._calls, []
            self._asked = False
            self._due = None
        for function, args in batch:
            function(*args)

    def _ask_trio(self) -> None:
        # a run that is over has nobody left to deliver to
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self.deliver)

    def _keep_time(self) -> None:
        """The timer thread: asks trio for a delivery when the oldest waiting call is due."""
        with self._lock:
            while not self._closed:
                if self._due is None:
                    self._due_changed.wait()
                    continue
                left = self._due - time.monotonic()
                if left > 0:
                    self._due_changed.wait(left)
                    continue
                self._due = None
                if not self._asked:
                    self._asked = True
                    self._ask_trio()  # only queues the delivery: safe under the lock
