"""Virtual M-Bus: existing M-Bus masters read the installed meters from the gateway as if the
meters were on their own bus (docs/slave.md).

``MeterBook`` keeps a ``MeterDirectory`` (``core.slave``) of every installed meter with the raw
frames of its latest stored reading; it is loaded in a worker thread at start and refreshed for
the meters of each ``READINGS_STORED`` event and whenever the meter list or the settings change,
so a request costs no store access. ``VirtualMBusService`` listens on TCP; ``serve_master``
answers one master on any byte stream (a TCP connection or a slave serial port), each with its
own ``VirtualBus``: selection, frame count bits and multi-telegram positions.

What a master meets:
- frames are taken from the byte stream as they complete; bytes that form no frame are dropped
  and counted as refused, and a frame left incomplete for ``FRAME_GAP`` seconds is dropped;
- a master that sends no complete frame for ``activity_timeout_s`` is disconnected;
- beyond ``max_connections`` a new connection is accepted and closed at once;
- a master that sends without reading its answers is paused by TCP's flow control (the answers
  wait in the socket's send buffer); it holds up nobody else.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Any, Protocol

import trio

from mbusgw.core import MBusError
from mbusgw.core.frame import Discarded, FrameParser
from mbusgw.core.slave import (
    MeterDirectory,
    SlaveIdentity,
    VirtualBus,
    VirtualMeter,
    reframe_wireless,
)
from mbusgw.core.wireless_decoder import WirelessDecoder
from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.errors import NotFound
from mbusgw.gateway.events import READINGS_STORED, EventBus
from mbusgw.gateway.facade import Store
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.services.slave import (
    SlaveCounters,
    Status,
    peer_name,
    registered,
    run_session,
)
from mbusgw.gateway.settings import Settings
from mbusgw.gateway.slave_settings import NO_ADDRESS, VirtualMBusSettings

logger = logging.getLogger("mbusgw.vmbus")

FRAME_GAP = 0.5  # s: an incomplete frame older than this is noise, not the start of a request
RECEIVE = 4096
DAY = 86_400
# How far back the raw telegrams are searched for a meter's latest one, widened until found.
RAW_WINDOWS = (DAY, 32 * DAY, 400 * DAY, math.inf)


class SlaveHost(Protocol):
    """What the virtual M-Bus needs of the running gateway (``GatewayHandle`` has it)."""

    store: Store
    events: EventBus
    clock: WallClock
    meters: list[Meter]
    service_status: dict[str, Status]

    @property
    def keys(self) -> Any:
        """The wireless M-Bus key store (a ``WirelessDecoder``'s ``keys``)."""
        ...

    @property
    def settings(self) -> Settings: ...

    def log(self, level: int, origin: str, text: str) -> None: ...


def virtual_primary(meter: Meter, settings: VirtualMBusSettings) -> int | None:
    own = settings.meters.get(meter.key)
    if own is not None and own.primary != NO_ADDRESS:
        return own.primary
    return None if meter.wireless else meter.primary_address


def _identity(meter: Meter, header: Any) -> SlaveIdentity:
    """The identity a selection compares: the stored header's where known, else the list's."""

    def pick(name: str, fallback: Any) -> Any:
        value = getattr(header, name, None) if header is not None else None
        return fallback if value is None else value

    ident = pick("id", meter.secondary_address) or ""
    return SlaveIdentity(
        ident.upper(),
        pick("manufacturer", meter.manufacturer),
        pick("version", meter.version),
        pick("medium", meter.medium),
        meter.enhanced_address,
    )


def load_meter(
    store: Store,
    meter: Meter,
    settings: VirtualMBusSettings,
    now: float,
    wireless: WirelessDecoder | None = None,
) -> VirtualMeter:
    """One meter with its latest stored reading's frames (blocking: a worker thread's job).
    A wireless meter's radio telegram is decrypted with ``wireless`` and re-framed as a wired
    RSP_UD; one that cannot be (no key, no records) is served as having no current reading."""
    primary = virtual_primary(meter, settings)
    for window in RAW_WINDOWS:
        since = None if math.isinf(window) else now - window
        try:
            raws = store.raw_telegrams(meter.key, since=since)
        except NotFound:  # installed, never stored
            break
        # a reading whose telegram did not decode (no header: garbled, no key) is not served
        good = [raw for raw in raws if raw.header is not None]
        if good:
            raw = good[-1]
            frames = tuple(raw.frames)
            if meter.wireless:
                frames = _reframed(frames, wireless, primary)
            return VirtualMeter(
                meter.key, _identity(meter, raw.header), frames, float(raw.received_at), primary
            )
    return VirtualMeter(meter.key, _identity(meter, None), (), None, primary)


def _reframed(
    frames: tuple[bytes, ...], wireless: WirelessDecoder | None, primary: int | None
) -> tuple[bytes, ...]:
    if wireless is None or not frames:
        return ()
    try:
        telegram = wireless.decode(frames[0])
    except MBusError:
        return ()
    framed = reframe_wireless(telegram, primary or 0)
    return () if framed is None else (framed,)


class MeterBook:
    """The directory the masters are answered from (see the module note)."""

    def __init__(self, host: SlaveHost) -> None:
        self._host = host
        self.directory = MeterDirectory()
        self._meters: list[Meter] | None = None
        self._settings: VirtualMBusSettings | None = None

    def fresh_since(self) -> float:
        """Readings from before this (seconds) are not current."""
        validity = self._host.settings.slave.virtual.validity_s
        return -math.inf if validity == 0 else self._host.clock.now().timestamp() - validity

    async def refresh(self, keys: set[str] | None = None) -> None:
        """Reload the given meters (None: all of them, as after a meter list change)."""
        meters = self._host.meters
        settings = self._host.settings.slave.virtual
        if meters is not self._meters or settings != self._settings:
            keys = None
        wanted = [m for m in meters if m.enabled and (keys is None or m.key in keys)]
        now = self._host.clock.now().timestamp()

        wireless = (
            WirelessDecoder(keys=self._host.keys) if any(m.wireless for m in wanted) else None
        )

        def load() -> list[VirtualMeter]:
            store = self._host.store
            return [load_meter(store, meter, settings, now, wireless) for meter in wanted]

        fresh = await trio.to_thread.run_sync(load)
        installed = {m.key for m in meters if m.enabled}
        kept = [] if keys is None else list(self.directory.meters.values())
        merged = {m.key: m for m in kept if m.key in installed}
        merged.update((m.key, m) for m in fresh)
        self.directory = MeterDirectory(merged.values())
        self._meters, self._settings = meters, settings

    async def follow(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with self._host.events.subscribe() as events:
            await self.refresh()
            task_status.started()
            while True:
                stale: set[str] = set()
                with trio.move_on_after(1.0):  # meter list and settings changes have no event
                    event = await events.receive()
                    if event.kind == READINGS_STORED:
                        stale |= set(event.detail.get("meters", ()))
                changed = self._host.meters is not self._meters
                if stale or changed or self._host.settings.slave.virtual != self._settings:
                    await self.refresh(stale)


async def serve_master(
    stream: trio.abc.Stream,
    book: MeterBook,
    counters: SlaveCounters,
    activity_timeout: float,
) -> str:
    """Answer one master until it leaves or is silent for ``activity_timeout`` seconds (0:
    never); returns why the session ended."""
    bus = VirtualBus()
    parser = FrameParser()
    last_frame = trio.current_time()
    while True:
        idle_until = last_frame + activity_timeout if activity_timeout else math.inf
        deadline = idle_until
        if parser.buffered:
            deadline = min(deadline, trio.current_time() + FRAME_GAP)
        data = None
        with trio.move_on_at(deadline):
            data = await stream.receive_some(RECEIVE)
        if data is None:
            if trio.current_time() >= idle_until:
                counters.timeouts += 1
                return "activity timeout"
            counters.refused_frames += 1  # the rest of the frame never came
            parser = FrameParser()
            continue
        if not data:
            return "closed by the master"
        counters.bytes_in += len(data)
        parser.feed(data)
        answers = []
        for event in parser.events():
            if isinstance(event, Discarded):
                counters.refused_frames += 1
                continue
            counters.frames_in += 1
            last_frame = trio.current_time()
            answer = bus.answer(event, book.directory, book.fresh_since())
            if answer is not None:
                answers.append(answer)
        if answers:
            reply = b"".join(answers)
            counters.frames_out += len(answers)
            counters.bytes_out += len(reply)
            await stream.send_all(reply)


class VirtualMBusService:
    """Service ``virtual-mbus``: ready (``task_status.started(port)``) once it listens."""

    name = "virtual-mbus"

    def __init__(self, host: SlaveHost) -> None:
        self.host = host
        self.counters = SlaveCounters()
        self.port: int | None = None
        self.book = MeterBook(host)

    def status(self) -> dict[str, Any]:
        settings = self.host.settings.slave.virtual
        return {
            "enabled": settings.enabled,
            "port": self.port,
            "meters": len(self.book.directory),
            **self.counters.as_dict(),
        }

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        settings = self.host.settings.slave.virtual
        self.counters.sessions_open = 0
        if not settings.enabled:
            self.port = None
            task_status.started(None)
            await trio.sleep_forever()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.book.follow)
            listeners = await trio.open_tcp_listeners(settings.port, host=settings.host)
            self.port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, partial(self.serve, settings), listeners)
            task_status.started(self.port)

    async def serve(self, settings: VirtualMBusSettings, stream: trio.abc.Stream) -> None:
        """One master on a connection (or a slave serial port)."""
        await run_session(
            stream,
            peer_name(stream),
            self.counters,
            settings.max_connections,
            self.log,
            lambda master: serve_master(
                master, self.book, self.counters, settings.activity_timeout_s
            ),
        )

    def log(self, level: int, text: str) -> None:
        self.host.log(level, self.name, text)


def virtual_mbus_service(gateway: SlaveHost) -> VirtualMBusService:
    """Entry point ``mbusgw.northbound``: the virtual M-Bus of the running gateway."""
    return registered(gateway, VirtualMBusService(gateway))
