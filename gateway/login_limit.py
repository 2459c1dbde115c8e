"""Failed-login limiting shared by every way in (the web, the terminal): one limiter per
gateway, so guesses spread over several services still count together."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

import trio


@dataclass
class LoginLimiter:
    """At most ``attempts`` failed logins per ``window_s`` for one key (an address, a user
    name); then the next attempt waits until the oldest failure leaves the window."""

    attempts: int = 5
    window_s: float = 300.0
    max_keys: int = 10_000
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def wait_s(self, *keys: str) -> int:
        """Seconds before any of ``keys`` may try again (0: it may try now)."""
        now = trio.current_time()
        wait = 0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.attempts:
                wait = max(wait, max(1, int(times[0] + self.window_s - now) + 1))
        return wait

    def failed(self, *keys: str) -> None:
        now = trio.current_time()
        for key in keys:
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times
