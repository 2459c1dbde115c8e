"""The gateway's internal event channel: meter failed / recovered / not seen, device started,
reading cycle finished, readings stored, report failed, service restarted, settings changed.
Reports, SNMP traps, MQTT, the Modbus map and the web's event stream subscribe to it; the
newest events are kept in memory, numbered, for the API's event history."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import trio

logger = logging.getLogger("mbusgw.events")

DEVICE_STARTED = "device_started"
METER_FAILED = "meter_failed"
METER_RECOVERED = "meter_recovered"
METER_NOT_SEEN = "meter_not_seen"
CYCLE_FINISHED = "cycle_finished"  # its readings are stored; detail: meters, failed, duration_s
READINGS_STORED = "readings_stored"  # durably committed; detail: meters (their keys)
REPORT_FAILED = "report_failed"
SERVICE_RESTARTED = "service_restarted"  # detail: service, reason
SETTINGS_CHANGED = "settings_changed"  # detail: sections
KINDS = (
    DEVICE_STARTED,
    METER_FAILED,
    METER_RECOVERED,
    METER_NOT_SEEN,
    CYCLE_FINISHED,
    READINGS_STORED,
    REPORT_FAILED,
    SERVICE_RESTARTED,
    SETTINGS_CHANGED,
)
NOT_KEPT = frozenset({READINGS_STORED})  # internal: one per stored batch, every meter's key
HISTORY = 10_000


@dataclass(frozen=True)
class Event:
    kind: str
    at: datetime
    meter_key: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class EventBus:
    """Fan-out to every subscriber. Publishing never blocks the reader: a subscriber that falls
    ``buffer`` events behind loses the newest ones, and the loss is counted and logged.

    The newest event of each kind is kept (``latest``), so a subscriber that starts later (a
    service started after the start-up read, or restarted) still learns what it missed."""

    def __init__(self, history: int = HISTORY) -> None:
        self._subscribers: list[trio.MemorySendChannel[Event]] = []
        self._latest: dict[str, Event] = {}
        self._history: deque[tuple[int, Event]] = deque(maxlen=history)
        self.last_id = 0  # the number of the newest event kept
        self.dropped = 0

    def history(self, after: int = 0) -> list[tuple[int, Event]]:
        """The kept events numbered above ``after``, oldest first (each with its number)."""
        if not self._history or after >= self._history[-1][0]:
            return []
        if after < self._history[0][0]:
            return list(self._history)
        return list(self._history)[after - self._history[0][0] + 1 :]

    def latest(self, kind: str) -> Event | None:
        """The newest event of ``kind`` published so far."""
        return self._latest.get(kind)

    def subscribe(self, buffer: int = 1024) -> trio.MemoryReceiveChannel[Event]:
        send, receive = trio.open_memory_channel[Event](buffer)
        self._subscribers.append(send)
        return receive

    def number_of(self, event: Event, within: int = 4096) -> int | None:
        """The number ``event`` got in the history (looked for among the newest ``within``);
        None when it was not kept."""
        for checked, (number, kept) in enumerate(reversed(self._history)):
            if kept is event:
                return number
            if checked >= within:
                break
        return None

    def publish(self, event: Event) -> None:
        self._latest[event.kind] = event
        if event.kind not in NOT_KEPT:
            self.last_id += 1
            self._history.append((self.last_id, event))
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                self.dropped += 1
                logger.warning("event subscriber is behind; dropped %s", event.kind)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(send)
