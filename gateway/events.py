"""The gateway's internal event channel: meter failed / recovered / not seen, device started,
reading cycle finished, readings stored. Reports, SNMP traps, the Modbus map and the web's live
views subscribe to it."""

from __future__ import annotations

import logging
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

    def __init__(self) -> None:
        self._subscribers: list[trio.MemorySendChannel[Event]] = []
        self._latest: dict[str, Event] = {}
        self.dropped = 0

    def latest(self, kind: str) -> Event | None:
        """The newest event of ``kind`` published so far."""
        return self._latest.get(kind)

    def subscribe(self, buffer: int = 1024) -> trio.MemoryReceiveChannel[Event]:
        send, receive = trio.open_memory_channel[Event](buffer)
        self._subscribers.append(send)
        return receive

    def publish(self, event: Event) -> None:
        self._latest[event.kind] = event
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                self.dropped += 1
                logger.warning("event subscriber is behind; dropped %s", event.kind)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(send)
