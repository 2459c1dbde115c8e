"""Service ``clock-watch``: compares the wall clock with the monotonic clock and logs a jump
(one step beyond the maximum accepted drift between two checks) or a drift (small steps adding
up beyond it); docs/time.md.

The gateway's schedules follow the wall clock (``sleep_until_wall`` re-reads it at least once a
minute), readings keep the reception time the wall clock gave and the meter's own time among
their values; this watch makes a step of the wall clock visible in the system log and as an
event, so a gap or a repeated hour in the data can be explained.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import trio

from mbusgw.gateway.events import Event
from mbusgw.gateway.parts import Shared
from mbusgw.gateway.supervisor import INFO, WARNING

CLOCK_JUMPED = "clock_jumped"
CLOCK_DRIFTED = "clock_drifted"


@dataclass
class ClockStep:
    at: datetime  # wall time after the step
    seconds: float  # positive: the wall clock went forward against the monotonic clock
    kind: str  # CLOCK_JUMPED | CLOCK_DRIFTED


class ClockWatch:
    name = "clock-watch"

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.steps: list[ClockStep] = []
        self._wall: datetime | None = None
        self._monotonic = 0.0
        self._drift = 0.0  # small steps since the last report

    def start(self) -> None:
        self._wall, self._monotonic = self.shared.clock.now(), trio.current_time()
        self._drift = 0.0

    def check(self) -> ClockStep | None:
        """Compare the clocks since the last check; the step logged, if any."""
        if self._wall is None:
            self.start()
            return None
        wall, monotonic = self.shared.clock.now(), trio.current_time()
        step = (wall - self._wall).total_seconds() - (monotonic - self._monotonic)
        self._wall, self._monotonic = wall, monotonic
        limit = self.shared.settings().time.max_drift_s
        if abs(step) > limit:
            found = ClockStep(wall, step, CLOCK_JUMPED)
            self._drift = 0.0
            text = f"wall clock jumped {_direction(step)} by {abs(step):.1f} s"
        else:
            self._drift += step
            if abs(self._drift) <= limit:
                return None
            found = ClockStep(wall, self._drift, CLOCK_DRIFTED)
            text = f"wall clock drifted {_direction(self._drift)} by {abs(self._drift):.1f} s"
            self._drift = 0.0
        self.steps.append(found)
        self.shared.log(WARNING, self.name, f"{text} against the monotonic clock (now {wall})")
        self.shared.events.publish(Event(found.kind, wall, detail={"seconds": found.seconds}))
        return found

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.start()
        self.shared.log(INFO, self.name, f"wall clock at start: {self._wall}")
        task_status.started()
        while True:
            await trio.sleep(self.shared.settings().time.check_interval_s)
            self.check()


def _direction(seconds: float) -> str:
    return "forward" if seconds > 0 else "back"
