"""Service ``mqtt``: every stored reading to the broker, at least once.

The store is the queue: a durable cursor per meter (record ``mqtt:cursor`` of the store's
``cursors`` table, beside the push reports') says up to which reading the broker has
acknowledged a meter's readings: a reception second and how many readings of that second (the
store keeps their arrival order), so two readings in one second are both sent. After each
stored batch, and after every (re)connection, each meter's readings past its cursor are
published; the cursors move only once the broker has acknowledged every message (QoS 1), with
a durable commit. A broker that is away for a day gets the day's readings when it returns; a
meter whose backlog passes ``max_backlog`` loses its oldest readings, with a line in the system
log. The service follows its own settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from mbusgw.core.jsonout import dumps
from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.events import READINGS_STORED, SETTINGS_CHANGED, EventBus
from mbusgw.gateway.facade import INFO, REPORT_CURSORS, WARNING, Store, StoreWriter
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.mqtt_settings import MqttSettings
from mbusgw.gateway.services.following import SettingsFollower
from mbusgw.gateway.services.mqtt import payloads as pl
from mbusgw.gateway.services.snmp.objects import GatewayView
from mbusgw.gateway.store.model import ReadingValues, SeriesInfo

if TYPE_CHECKING:
    from mbusgw.gateway.services.mqtt.link import BrokerLink

logger = logging.getLogger("mbusgw.mqtt")

STATUS_NAMES = {1: "ok", 2: "warning", 3: "error"}
TABLE = REPORT_CURSORS  # the delivery cursors' table, beside the push reports'
CURSOR = "mqtt:cursor"  # never a report's name (those have no colon)
ACK_TIMEOUT_S = 30.0
# messages made between two chances for the link to send them and read acknowledgements
PIPELINE_MESSAGES = 32  # well within the window: writing goes on while acknowledgements come
# messages awaiting their acknowledgement at most: the client holds each until then, and a
# cycle of 512 meters queued at once (readings, series, discovery) held tens of megabytes
IN_FLIGHT = 256
Log = Callable[[int, str, str], None]
# a cursor: (reception second, how many readings of that second the broker has acknowledged)
Position = tuple[int, int]


@dataclass
class MqttStatus:
    connected: bool = False
    last_error: str | None = None
    published: int = 0
    acknowledged: int = 0
    dropped: int = 0  # readings dropped by the backlog cap
    backlog: int = 0  # readings not yet acknowledged, at the last look

    def as_dict(self) -> dict[str, object]:
        return {
            "connected": self.connected,
            "last_error": self.last_error,
            "published": self.published,
            "acknowledged": self.acknowledged,
            "dropped": self.dropped,
            "backlog": self.backlog,
        }


class MqttService:
    name = "mqtt"

    def __init__(
        self,
        settings: Callable[[], MqttSettings],
        view: GatewayView,
        store: Store,
        writer: StoreWriter,
        events: EventBus,
        clock: WallClock,
        log: Log,
    ) -> None:
        self._settings = settings
        self._view = view
        self._device_name = view.device_name
        self._version = view.version
        self._meters = view.meters
        self._store = store
        self._writer = writer
        self._clock = clock
        self._log = log
        self._events = events.subscribe()  # made before the first reading: nothing is missed
        self.status = MqttStatus()
        self._link: BrokerLink | None = None
        self._dirty: set[str] = set()  # meters with readings to publish
        self._wake = trio.Event()
        self._follower = SettingsFollower()
        self._unacked: set[int] = set()
        self._configs_unacked: set[int] = set()  # discovery configs: in the window, not counted
        self._acked = trio.Event()
        # series (ids: each of one meter) whose discovery config is sent; thousands at a site
        self._discovered: set[int] = set()
        self._cursor: dict[str, Position] = {}
        self._start = 0
        self._generation = 0  # connections lost so far
        self._made = 0  # messages made since the link last had a chance to send them
        self._unsent = False  # a message of the batch was not taken

    def status_dict(self) -> dict[str, object]:
        return {"enabled": self._settings().enabled, **self.status.as_dict()}

    # ---------------------------------------------------------------- lifetime

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_events)
            await self._follower.run(self._settings, self._serve, task_status)

    async def _serve(self, settings: MqttSettings, task_status: Any) -> None:
        # paho is loaded when the publisher is switched on, not with every gateway
        from mbusgw.gateway.services.mqtt.link import BrokerLink

        self._load_cursor()
        topics = pl.Topics(settings.topic_prefix, settings.discovery_prefix)
        client_id = settings.client_id or f"mbusgw-{pl.safe(self._device_name())}"
        self.status = MqttStatus()
        self._discovered.clear()
        link = BrokerLink(settings, client_id, topics.availability, self._state, self._ack)
        self._link = link
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            task_status.started()
            try:
                while True:
                    await self._wake.wait()
                    self._wake = trio.Event()
                    if self.status.connected:
                        await self._publish_pending(settings, topics)
            finally:
                self._link = None
                self.status.connected = False
                with trio.CancelScope(shield=True):
                    await link.stop()

    def _state(self, connected: bool, error: str | None) -> None:
        was = self.status.connected
        self.status.connected = connected
        self.status.last_error = error
        if connected and not was:
            self._log(INFO, self.name, "connected to the broker")
            self._discovered.clear()  # the broker may have lost them: sent again
            self._dirty.update(m.key for m in self._meters() if m.active)
            self._wake.set()
        elif not connected and error and (was or error != self._last_logged):
            self._log(WARNING, self.name, error)
            self._last_logged = error
        if not connected:
            self._generation += 1  # what was sent before is not acknowledged any more
            self._unacked.clear()
            self._configs_unacked.clear()
            self._acked.set()

    _last_logged: str | None = None

    def _ack(self, mid: int) -> None:
        if mid in self._unacked:
            self._unacked.discard(mid)
            self.status.acknowledged += 1
        elif mid in self._configs_unacked:
            self._configs_unacked.discard(mid)
        else:
            return
        if not self._unacked or self._in_flight() <= IN_FLIGHT // 2:
            self._acked.set()  # whoever waits looks again: for room, or for none left

    async def _follow_events(self) -> None:
        async for event in self._events:
            if event.kind == SETTINGS_CHANGED and "mqtt" in event.detail.get("sections", ()):
                self._follower.changed()
            elif event.kind == READINGS_STORED:
                self._dirty.update(event.detail.get("meters", ()))
                self._wake.set()

    # ---------------------------------------------------------------- cursors

    def _load_cursor(self) -> None:
        record = self._store.record(TABLE, CURSOR)
        meters = record.get("meters") if isinstance(record, dict) else None
        start = record.get("start") if isinstance(record, dict) else None
        found = meters.items() if isinstance(meters, dict) else ()
        self._cursor = {k: p for k, v in found if (p := stored_position(v)) is not None}
        # first start: readings stored from now on are published, not the whole history
        self._start = start if isinstance(start, int) else int(self._clock.now().timestamp())

    async def _commit_cursor(self) -> None:
        record = {"meters": {k: list(p) for k, p in self._cursor.items()}, "start": self._start}
        await self._writer.put_record(TABLE, CURSOR, record)

    # ---------------------------------------------------------------- publishing

    async def _publish_pending(self, settings: MqttSettings, topics: pl.Topics) -> None:
        link = self._link
        if link is None:
            return
        meters = {m.key: m for m in self._meters() if m.active}
        chosen = [key for key in sorted(self._dirty) if key in meters]
        self._dirty.clear()
        if settings.discovery and not self._discovered:
            node = f"mbusgw_{pl.safe(self._device_name())}"
            for topic, payload in pl.gateway_discovery(
                topics, node, self._device_name(), self._version
            ):
                link.publish(topic, payload, 1, True)
        self._publish_gateway_state(link, topics)
        newest: dict[str, Position] = {}
        backlog = 0
        generation, self._unsent = self._generation, False
        series = {info.id: info for info in self._store.series()}  # read once per batch
        positions = {key: self._cursor.get(key, (self._start, 0)) for key in chosen}
        unsent = self._store.readings_after(positions)  # one snapshot for the whole batch
        for key in chosen:
            found = unsent.get(key)
            if found is None or not len(found):
                continue
            newest[key] = moved(positions[key], found)
            readings = self._readings(key, found, settings.max_backlog, series)
            backlog += len(readings)
            if not await self._publish_meter(link, settings, topics, meters[key], readings):
                # cut short (the connection lost or stuck): no cursor moves, all again later
                self._unsent = True
                self._dirty.update(chosen)
                break
        self.status.backlog = backlog
        if not newest:
            return
        with trio.move_on_after(ACK_TIMEOUT_S):
            while self._unacked and self.status.connected:
                self._acked = trio.Event()
                await self._acked.wait()
        lost = not self.status.connected or self._generation != generation
        if self._unacked or self._unsent or lost:
            self._dirty.update(newest)  # not all acknowledged: published again later
            return
        self._cursor.update(newest)
        self.status.backlog = 0
        await self._commit_cursor()

    async def _publish_meter(
        self,
        link: BrokerLink,
        settings: MqttSettings,
        topics: pl.Topics,
        meter: Meter,
        readings: list[tuple[int, list[pl.SeriesValue]]],
    ) -> bool:
        """A message per reading, then the newest value of each series on its own topic: each
        value's JSON written once for both. False when the connection was lost meanwhile."""
        if not readings:
            return True
        meter_json = pl.identity_json(meter)
        topic = topics.reading(meter.key)
        for read_at, values in readings:
            when = pl.iso(read_at)
            parts = [pl.value_json(v) for v in values]
            self._send(
                link, topic, pl.reading_message(meter_json, when, parts), settings.qos, False
            )
            if not await self._pipeline():
                return False
        level = topics.series_level(meter.key)
        for value, part in zip(values, parts, strict=True):
            payload = pl.series_state(when, part)
            self._send(link, f"{level}{value.series}", payload, settings.qos, settings.retain)
            if settings.discovery:
                self._discover(link, topics, meter, value)
        return await self._pipeline()

    async def _pipeline(self) -> bool:
        """Now and then, the link's writer sends what is queued and its reader takes the
        acknowledgements, while the next messages are made (a backlog of a day of one meter
        too, not only a cycle of many); with ``IN_FLIGHT`` unacknowledged, until half of them
        are. False when the connection is lost, or no acknowledgement comes."""
        if self._made >= PIPELINE_MESSAGES:
            self._made = 0
            await trio.lowlevel.checkpoint()
        if self._in_flight() < IN_FLIGHT:
            return self.status.connected
        with trio.move_on_after(ACK_TIMEOUT_S):
            while self._in_flight() > IN_FLIGHT // 2 and self.status.connected:
                self._acked = trio.Event()
                await self._acked.wait()
        return self.status.connected and self._in_flight() < IN_FLIGHT

    def _in_flight(self) -> int:
        return len(self._unacked) + len(self._configs_unacked)

    def _send(self, link: BrokerLink, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        mid = link.publish(topic, payload, qos, retain)
        self.status.published += 1
        self._made += 1
        if qos and mid >= 0:
            self._unacked.add(mid)
        elif qos:  # not taken (no connection, or every message id in use): never acknowledged
            self._unsent = True

    def _publish_gateway_state(self, link: BrokerLink, topics: pl.Topics) -> None:
        active = [m for m in self._meters() if m.active]
        health = self._view.health
        failed = sum(1 for m in active if m.key in health and health[m.key].status == "failed")
        state = {
            "status": STATUS_NAMES[self._view.status()],
            "meters_active": len(active),
            "meters_failed": failed,
        }
        link.publish(topics.gateway_state, dumps(state).encode(), 1, True)

    def _discover(
        self, link: BrokerLink, topics: pl.Topics, meter: Meter, value: pl.SeriesValue
    ) -> None:
        if value.series in self._discovered:
            return
        node = f"mbusgw_{pl.safe(self._device_name())}"
        config = pl.meter_discovery(topics, node, meter, value)
        if config is not None:
            mid = link.publish(config[0], config[1], 1, True)
            if mid >= 0:
                self._configs_unacked.add(mid)
        self._discovered.add(value.series)

    def _readings(
        self, key: str, found: ReadingValues, cap: int, infos: dict[int, SeriesInfo]
    ) -> list[tuple[int, list[pl.SeriesValue]]]:
        """The meter's unsent readings that have values, oldest first (at most ``cap``)."""
        table = found.values
        numbers = table.as_float()
        by_reading: dict[int, list[pl.SeriesValue]] = {}  # values come grouped by reading
        for i in range(len(table)):
            info: SeriesInfo | None = infos.get(int(table.series[i]))
            if info is None:
                continue
            value = pl.SeriesValue(
                info.id, info.quantity, info.unit, info.description,
                table.value(i), float(numbers[i]),
            )  # fmt: skip
            by_reading.setdefault(int(found.reading[i]), []).append(value)
        readings = [(int(found.received_at[r]), values) for r, values in by_reading.items()]
        if len(readings) > cap:
            dropped = len(readings) - cap
            self.status.dropped += dropped
            self._log(
                WARNING,
                key,
                f"MQTT backlog over {cap} readings: the {dropped} oldest were dropped",
            )
            readings = readings[-cap:]
        return readings


def stored_position(value: object) -> Position | None:
    """A cursor as the record holds it: ``[second, count]``; or the older form, a bare second
    (every reading up to and including it acknowledged); None if it is neither."""
    if type(value) is int and value >= 0:
        return (value + 1, 0)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(type(v) is int and v >= 0 for v in value)
    ):
        return (value[0], value[1])
    return None


def moved(position: Position, found: ReadingValues) -> Position:
    """The cursor past the newest of ``found`` (readings past ``position``)."""
    last = int(found.received_at[-1])
    count = int((found.received_at == last).sum())
    return (last, count + position[1] if last == position[0] else count)
