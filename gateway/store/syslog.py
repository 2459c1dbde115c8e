"""The system log in memory: levels, the minimum stored level, and silencing of repeats.

SPEC §3: repeated identical messages from the same origin are silenced for one minute; then a
summary line says how many times the message was repeated; the next occurrence after that is
written once before silencing starts again. Entries wait here until the store writer takes them
into its next transaction (at most ``flush_delay`` seconds), so logging never blocks and never
costs a disk commit of its own.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from dataclasses import dataclass

from mbusgw.gateway.clock import WallClock

SILENCE_SECONDS = 60.0
FLUSH_DELAY = 1.0
MAX_PENDING = 10_000
MAX_ORIGIN = 255
MAX_TEXT = 4000


class LogLevel(enum.IntEnum):
    """The product's numbering (as the supervisor's ``DEBUG, INFO, WARNING, ERROR``)."""

    DEBUG = -1
    INFO = 0
    WARNING = 1
    ERROR = 2


@dataclass(frozen=True, slots=True)
class LogEntry:
    time: float  # seconds since the epoch, UTC
    level: int
    origin: str
    text: str


class _Window:
    __slots__ = ("until", "repeats")

    def __init__(self, until: float) -> None:
        self.until = until
        self.repeats = 0


class SystemLog:
    """Accepts entries from any task without blocking; the writer persists them in batches."""

    def __init__(self, clock: WallClock, *, min_level: int = LogLevel.INFO) -> None:
        self.clock = clock
        self.min_level = min_level
        self._pending: deque[LogEntry] = deque()
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._dropped = 0
        self._first_pending_at: float | None = None
        self._lock = threading.Lock()  # log() may be called from worker threads too
        self.on_pending = lambda: None  # the writer's wake-up call

    def log(self, level: int, origin: str, text: str) -> None:
        if level < self.min_level:
            return
        origin, text = origin[:MAX_ORIGIN], text[:MAX_TEXT]
        now = self._now()
        key = (origin, int(level), text)
        with self._lock:
            was_idle = self._first_pending_at is None
            window = self._windows.get(key)
            if window is not None:
                if self._open(window, now):
                    window.repeats += 1
                    # the first repeat gives the writer a deadline: the summary at window end
                    wake = window.repeats == 1
                else:
                    self._close(key, window)
                    window = None
            if window is None:
                self._windows[key] = _Window(now + SILENCE_SECONDS)
                self._push(LogEntry(now, int(level), origin, text))
                wake = was_idle
        if wake:
            self.on_pending()

    def debug(self, origin: str, text: str) -> None:
        self.log(LogLevel.DEBUG, origin, text)

    def info(self, origin: str, text: str) -> None:
        self.log(LogLevel.INFO, origin, text)

    def warning(self, origin: str, text: str) -> None:
        self.log(LogLevel.WARNING, origin, text)

    def error(self, origin: str, text: str) -> None:
        self.log(LogLevel.ERROR, origin, text)

    def _now(self) -> float:
        return self.clock.now().timestamp()

    @staticmethod
    def _open(window: _Window, now: float) -> bool:
        # a wall clock stepped back by more than the window must not silence for hours
        return now < window.until and window.until - now <= SILENCE_SECONDS

    def _close(self, key: tuple[str, int, str], window: _Window) -> None:
        del self._windows[key]
        if window.repeats:
            origin, level, text = key
            times = "once more" if window.repeats == 1 else f"{window.repeats} more times"
            self._push(LogEntry(window.until, level, origin, f"{text} … repeated {times}"))

    def _push(self, entry: LogEntry) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self._dropped += 1
        self._pending.append(entry)
        if self._first_pending_at is None:
            self._first_pending_at = self._now()

    def take(self) -> list[LogEntry]:
        """Entries to write now, with the summaries of windows that have ended."""
        now = self._now()
        with self._lock:
            for key, window in list(self._windows.items()):
                if not self._open(window, now):
                    self._close(key, window)
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                text = f"{dropped} log entries dropped while the store writer was behind"
                self._pending.append(LogEntry(now, LogLevel.WARNING, "store", text))
            entries = list(self._pending)
            self._pending.clear()
            self._first_pending_at = None
        return entries

    def next_deadline(self) -> float | None:
        """Wall time at which ``take`` has something to write, or ``None`` if nothing waits."""
        with self._lock:
            deadlines = [w.until for w in self._windows.values() if w.repeats]
            if self._first_pending_at is not None:
                deadlines.append(self._first_pending_at + FLUSH_DELAY)
        return min(deadlines, default=None)
