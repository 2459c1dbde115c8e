"""Service ``snmp``: the v2c agent on its UDP port and the notifications on the gateway's
events. It follows its settings itself: a change of ``snmp`` rebinds the port and takes the new
community and receivers, without a restart of anything else.

Transport: a trio UDP socket of our own, with pysnmp's protocol layer for the messages.
pysnmp's own engine runs on asyncio (its carrier and dispatcher), which would need the
asyncio bridge; the agent's job (read-only, one community, one MIB of our own) needs only the
message codec, and its own socket keeps it in the gateway's trio tree like every service."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import trio

from mbusgw.gateway.events import (
    CYCLE_FINISHED,
    METER_FAILED,
    METER_NOT_SEEN,
    METER_RECOVERED,
    REPORT_FAILED,
    SETTINGS_CHANGED,
    Event,
    EventBus,
)
from mbusgw.gateway.facade import INFO, WARNING
from mbusgw.gateway.services.following import SettingsFollower
from mbusgw.gateway.services.snmp import objects as mib
from mbusgw.gateway.services.snmp.notify import ReceiverStatus, send_to
from mbusgw.gateway.snmp_settings import SnmpSettings

logger = logging.getLogger("mbusgw.snmp")

SNAPSHOT_S = 1.0  # a walk reads one snapshot; a newer one is made after this long
TRAP_FOR = {
    METER_FAILED: mib.METER_FAILED,
    METER_RECOVERED: mib.METER_RECOVERED,
    METER_NOT_SEEN: mib.METER_NOT_SEEN,
}
STATUS_MAY_CHANGE = {*TRAP_FOR, CYCLE_FINISHED, REPORT_FAILED}
Log = Callable[[int, str, str], None]


class SnmpService:
    name = "snmp"

    def __init__(
        self,
        settings: Callable[[], SnmpSettings],
        view: mib.GatewayView,
        events: EventBus,
        log: Log,
    ) -> None:
        self._settings = settings
        self.view = view
        self._log = log
        self._events = events.subscribe()  # made before the first reading: nothing is missed
        self.address: tuple[str, int] | None = None  # where the agent listens
        self.requests = 0
        self.refused = 0
        self.receivers: dict[str, ReceiverStatus] = {}
        self.last_status: int | None = None
        self._snapshot: mib.Snapshot | None = None
        self._snapshot_at = -SNAPSHOT_S
        self._follower = SettingsFollower()
        self._nursery: trio.Nursery | None = None

    def status(self) -> dict[str, Any]:
        settings = self._settings()
        return {
            "enabled": settings.enabled,
            "address": f"{self.address[0]}:{self.address[1]}" if self.address else None,
            "requests": self.requests,
            "refused": self.refused,
            "status": self.last_status,
            "receivers": {name: self._receiver(name).as_dict() for name in settings.receivers},
        }

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.last_status = self.view.status()
            nursery.start_soon(self._follow_events)
            await self._follower.run(self._settings, self._serve, task_status, self._idle)

    def _idle(self) -> None:
        self.address = None

    async def _serve(self, settings: SnmpSettings, task_status: Any) -> None:
        # pysnmp is loaded when the agent is switched on, not with every gateway
        from mbusgw.gateway.services.snmp.codec import Refused, answer

        family = trio.socket.AF_INET6 if ":" in settings.host else trio.socket.AF_INET
        with trio.socket.socket(family, trio.socket.SOCK_DGRAM) as sock:
            await sock.bind((settings.host, settings.port))
            self.address = sock.getsockname()[:2]
            self._log(INFO, self.name, f"SNMP v2c agent on {self.address[0]}:{self.address[1]}")
            task_status.started(self.address)
            community = settings.community.encode()
            while True:
                datagram, peer = await sock.recvfrom(65_536)
                try:
                    reply = answer(datagram, community, self.snapshot())
                except Refused as exc:
                    self.refused += 1
                    logger.debug("SNMP request from %s refused: %s", peer[0], exc)
                    continue
                self.requests += 1
                try:
                    await sock.sendto(reply, peer)
                except OSError as exc:
                    logger.debug("SNMP reply to %s not sent: %s", peer[0], exc)

    def snapshot(self) -> mib.Snapshot:
        now = trio.current_time()
        if self._snapshot is None or now - self._snapshot_at >= SNAPSHOT_S:
            self._snapshot, self._snapshot_at = self.view.snapshot(), now
        return self._snapshot

    async def _follow_events(self) -> None:
        async for event in self._events:
            if event.kind == SETTINGS_CHANGED and "snmp" in event.detail.get("sections", ()):
                self._follower.changed()
                continue
            settings = self._settings()
            if not settings.enabled:
                continue
            if event.kind in TRAP_FOR and settings.traps_on_meters:
                self._notify(TRAP_FOR[event.kind], self._meter_objects(event))
            if event.kind in STATUS_MAY_CHANGE:
                status = self.view.status()
                if status != self.last_status and settings.traps_on_status:
                    self._notify(
                        mib.STATUS_CHANGED, [((*mib.DEVICE, mib.STATUS, 0), ("integer", status))]
                    )
                self.last_status = status

    def _meter_objects(self, event: Event) -> list[tuple[mib.Oid, mib.Value]]:
        meters = list(self.view.meters())
        index = next((i for i, m in enumerate(meters, 1) if m.key == event.meter_key), 0)
        meter = meters[index - 1] if index else None
        health = self.view.health.get(event.meter_key or "")
        entry = mib.METER_ENTRY
        found: list[tuple[mib.Oid, mib.Value]] = [
            ((*entry, mib.METER_ID, index), ("text", event.meter_key or "")),
            ((*entry, mib.METER_POSITION, index), ("text", meter.position if meter else "")),
        ]
        if event.kind == METER_NOT_SEEN:
            last_good = health.last_good if health else None
            found.append(((*entry, mib.METER_LAST_GOOD, index), ("text", mib.utc_text(last_good))))
        else:
            code = mib.meter_code(meter, health) if meter else mib.METER_CODES["never"]
            found.append(((*entry, mib.METER_STATUS, index), ("integer", code)))
        return found

    def _receiver(self, name: str) -> ReceiverStatus:
        return self.receivers.setdefault(name, ReceiverStatus())

    def _notify(self, trap: mib.Oid, values: list[tuple[mib.Oid, mib.Value]]) -> None:
        """Send in the background, to every receiver at once."""
        if self._nursery is None:
            return
        ticks = int(self.view.uptime_s() * 100)
        for name, receiver in self._settings().receivers.items():
            self._nursery.start_soon(
                send_to, name, receiver, trap, ticks, values, self._receiver(name), self._warn
            )

    async def send_test(self) -> dict[str, bool]:
        """The test notification to every receiver; which ones got it (an INFORM: confirmed)."""
        settings = self._settings()
        if not settings.receivers:
            raise ValueError("no SNMP receivers are configured")
        ticks = int(self.view.uptime_s() * 100)
        values = [((*mib.DEVICE, mib.DEVICE_NAME, 0), ("text", self.view.device_name()))]
        results: dict[str, bool] = {}

        async def one(name: str) -> None:
            receiver = settings.receivers[name]
            results[name] = await send_to(
                name, receiver, mib.TEST, ticks, values, self._receiver(name), self._warn
            )

        async with trio.open_nursery() as nursery:
            for name in settings.receivers:
                nursery.start_soon(one, name)
        return results

    def _warn(self, text: str) -> None:
        self._log(WARNING, self.name, text)


def uptime_since(clock_now: Callable[[], datetime], started: Callable[[], datetime | None]):
    """Seconds since ``started()`` (0 before the start)."""

    def seconds() -> float:
        at = started()
        return (clock_now() - at).total_seconds() if at else 0.0

    return seconds
