"""Wireless M-Bus in the running gateway: the configured receivers, the decoder with the
gateway's key store, and what a telegram becomes.

A telegram of an *installed* wireless meter becomes a reading like a wired one: the pipeline
accounts it (per-meter health, events, the live snapshot) and it waits in ``pending`` for the
next store batch (one batch per ``FLUSH_INTERVAL`` or per ``MAX_BATCH`` readings, whichever
comes first, so a busy radio does not cost a transaction per telegram). A telegram that cannot
be decrypted or decoded becomes a failed reading with its raw bytes (DECRYPT_ERROR for a missing
or wrong key), so it can be decoded again once the key is there. Telegrams of meters that are
not installed are not stored: the decoder's diagnosis counts them, and ``heard()`` lists them
(the wireless search installs from it).

The service takes a telegram from whichever receiver delivers it first (copies from the others
only add their signal levels). Each wireless meter is *bound* to the receiver that hears it
best — shown in the meter list, its ``EnhancedAddress``, and resolved again by ``rebindings``
(re-install) from the signal levels heard in the last ``RSSI_WINDOW`` seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import trio

from mbusgw.core.errors import MBusError, UnsupportedError
from mbusgw.core.wireless_decoder import WirelessDecoder
from mbusgw.core.wmbus import MeterId
from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.compact_layouts import shipped_compact_layouts
from mbusgw.gateway.errors import describe
from mbusgw.gateway.keys import KeyStore
from mbusgw.gateway.meters import AddressingMode, Meter
from mbusgw.gateway.reading import MeterReading
from mbusgw.gateway.receivers import (
    Amb8465Receiver,
    Im871aReceiver,
    RadioFrame,
    RawHexReceiver,
    Receiver,
)
from mbusgw.gateway.receivers.lines import serial_opener, tcp_opener
from mbusgw.gateway.receivers.service import WirelessService
from mbusgw.gateway.receivers.simulator import SimulatedRadio
from mbusgw.gateway.settings import RECEIVER_BAUDS, InterfaceConfig
from mbusgw.gateway.simulator.radio import default_field

FLUSH_INTERVAL = 1.0  # seconds a decoded telegram waits at most for its store batch
MAX_BATCH = 256  # readings that make a batch at once
RSSI_WINDOW = 3600.0  # re-install weighs what each receiver heard in the last hour
REINSTALL_MARGIN_DB = 3.0  # a meter moves only to a receiver this much stronger

Sink = Callable[[Sequence[MeterReading], dict[str, MeterId]], Awaitable[None]]
"""Stores a batch of readings and applies learnt identities (``meter key → MeterId``)."""


@dataclass(frozen=True)
class Rebinding:
    """A wireless meter moved to a stronger receiver by a re-install."""

    meter: str
    old: str
    new: str
    old_dbm: float | None
    new_dbm: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "old": self.old or None,
            "new": self.new,
            "old_rssi": self.old_dbm,
            "new_rssi": self.new_dbm,
        }

    def __str__(self) -> str:
        if not self.old:
            old = "none"
        elif self.old_dbm is None:
            old = f"{self.old} (not heard lately)"
        else:
            old = f"{self.old} ({self.old_dbm:.1f} dBm)"
        return f"meter {self.meter}: receiver {old} → {self.new} ({self.new_dbm:.1f} dBm)"


def make_receiver(config: InterfaceConfig, simulation: SimulatedRadio | None) -> Receiver:
    """The receiver of one configured interface (its kind checked by ``load_startup``)."""
    if config.kind == "hex_tcp":
        return RawHexReceiver(config.name, tcp_opener(config.host or "", config.port or 0))
    if config.kind == "simulated_receiver":
        if simulation is None:
            raise ValueError(f"interface {config.name}: a simulated receiver needs its radio")
        kind = config.protocol
        opener = serial_opener(simulation.device(config.name), RECEIVER_BAUDS[kind])
    else:
        kind = config.kind
        opener = serial_opener(config.device or "", config.baud)
    receiver_class = Im871aReceiver if kind == "im871a" else Amb8465Receiver
    return receiver_class(config.name, opener, config.link_mode)


def simulated_radio(configs: Sequence[InterfaceConfig], seed: int) -> SimulatedRadio | None:
    """One radio field heard by every simulated receiver (None when there is none)."""
    simulated = [c for c in configs if c.kind == "simulated_receiver"]
    if not simulated:
        return None
    field = default_field(
        [c.name for c in simulated],
        max(c.meters for c in simulated),
        interval=min(c.interval for c in simulated),
        seed=seed,
    )
    return SimulatedRadio(field, {c.name: c.protocol for c in simulated})


def wireless_meter(meter: MeterId, receiver: str | None, position: str | None = None) -> Meter:
    """A heard meter as the installer would enter it: by its ID, bound to ``receiver``."""
    return Meter(
        key=meter.id.upper(),
        position=position or f"{meter.manufacturer} {meter.id} (wireless)",
        secondary_address=meter.id.upper(),
        baud=2400,
        addressing=(AddressingMode.ESECONDARY,),
        enhanced_address=receiver or None,
        interface=receiver or "",
        wireless=True,
        manufacturer=meter.manufacturer,
        version=meter.version,
        medium=meter.device_type,
    )


class WirelessNetwork:
    """The receivers, their service and the decoder, and the path of a telegram."""

    def __init__(
        self,
        configs: Sequence[InterfaceConfig],
        *,
        keys: KeyStore,
        clock: WallClock,
        record: Callable[[MeterReading], None],
        storing: bool = True,
        seed: int = 1,
    ) -> None:
        """``record`` accounts a reading (health, events, live snapshot); with ``storing``
        readings wait in ``pending`` for the store."""
        self.clock = clock
        self.simulation = simulated_radio(configs, seed)
        self.receivers = {c.name: make_receiver(c, self.simulation) for c in configs}
        self.decoder = WirelessDecoder(keys=keys, known_layouts=shipped_compact_layouts())
        keys.on_change(lambda: self.decoder.set_keys(keys))
        self.service = WirelessService(
            list(self.receivers.values()),
            self.decoder,
            self._telegram,
            on_error=self._failure,
            clock=clock,
        )
        self._record = record
        self._storing = storing
        self._meters: dict[str, Meter] = {}  # ID → installed wireless meter
        self.pending: list[MeterReading] = []
        self.learned: dict[str, MeterId] = {}  # meter key → identity heard (to be saved)
        self._full = trio.Event()

    # ---------------------------------------------------------------- installed meters

    def set_meters(self, meters: Sequence[Meter]) -> None:
        """The installed meter list changed: which telegrams become readings."""
        self._meters = {
            m.secondary_address: m for m in meters if m.wireless and m.secondary_address
        }

    def installed(self, meter: MeterId) -> Meter | None:
        found = self._meters.get(meter.id.upper())
        if found is None or found.manufacturer not in (None, meter.manufacturer):
            return None  # the same ID from another manufacturer is another meter
        return found

    # ---------------------------------------------------------------- telegrams

    def _telegram(self, telegram: Any, frame: RadioFrame) -> None:
        meter = self.installed(telegram.meter)
        if meter is None or not meter.active:
            return
        now = self.clock.now()
        application = telegram.application
        if application is None:
            reading = MeterReading(
                meter,
                now,
                False,
                (frame.data,),
                error=f"its payload ({telegram.payload_kind}) holds no M-Bus records",
                attempts=1,
                failure=UnsupportedError,
            )
        else:
            reading = MeterReading(
                meter,
                now,
                True,
                (frame.data,),
                (application,),
                attempts=1,
                status_byte=application.header.status,
            )
        self._learn(meter, telegram.meter)
        self._accept(reading)

    def _failure(self, error: MBusError, frame: RadioFrame) -> None:
        heard = getattr(error, "meter", None)
        meter = self.installed(heard) if heard is not None else None
        if meter is None or not meter.active:
            return
        reading = MeterReading(
            meter,
            self.clock.now(),
            False,
            (frame.data,),
            error=describe(error),
            attempts=1,
            failure=type(error),
        )
        self._accept(reading)

    def _learn(self, meter: Meter, heard: MeterId) -> None:
        known = (meter.manufacturer, meter.version, meter.medium)
        if known != (heard.manufacturer, heard.version, heard.device_type):
            self.learned[meter.key] = heard

    def _accept(self, reading: MeterReading) -> None:
        self._record(reading)
        if self._storing:
            self.pending.append(reading)
            if len(self.pending) >= MAX_BATCH:
                self._full.set()

    async def run_store(self, sink: Sink, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Service ``wireless-store``: hands ``pending`` to ``sink`` once a second (or at once
        when a batch is full)."""
        task_status.started()
        while True:
            with trio.move_on_after(FLUSH_INTERVAL):
                await self._full.wait()
            await self.flush(sink)

    async def flush(self, sink: Sink) -> None:
        """Store what is pending now (also the last batch at shutdown)."""
        batch, self.pending = self.pending, []
        learned, self.learned = self.learned, {}
        self._full = trio.Event()
        if batch or learned:
            with trio.CancelScope(shield=True):  # taken out of pending: it must reach the store
                await sink(batch, learned)

    # ---------------------------------------------------------------- what is heard

    def _heard_ids(self) -> dict[str, list[MeterId]]:
        by_id: dict[str, list[MeterId]] = {}
        for meter in self.service.heard_meters():
            by_id.setdefault(meter.id.upper(), []).append(meter)
        return by_id

    def identity_of(self, meter: Meter, heard: dict[str, list[MeterId]]) -> MeterId | None:
        """The address an installed meter is heard with (its ID, and its manufacturer when
        known)."""
        for candidate in heard.get(meter.secondary_address or "", ()):
            if meter.manufacturer in (None, candidate.manufacturer):
                return candidate
        return None

    def heard(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every meter heard (since ``since``), installed or not, most recent first."""
        out = []
        for meter, diagnosis in self.decoder.diagnoses().items():
            last = diagnosis.last_heard
            if since is not None and (last is None or last < since):
                continue
            levels = self.service.rssi_by_receiver(meter)
            out.append(
                {
                    "meter": meter.to_dict(),
                    "key": meter.id.upper(),
                    "installed": self.installed(meter) is not None,
                    "status": diagnosis.status,
                    "counts": dict(diagnosis.counts),
                    "last_heard": last.isoformat() if last else None,
                    "rssi": levels,
                    "best_receiver": self.service.best_receiver(meter),
                }
            )
        out.sort(key=lambda entry: entry["last_heard"] or "", reverse=True)
        return out

    def heard_meter_ids(self, since: datetime) -> list[MeterId]:
        """Meters whose whole telegrams were heard since ``since`` (a wireless search)."""
        return [
            meter
            for meter, diagnosis in self.decoder.diagnoses().items()
            if diagnosis.last_heard is not None and diagnosis.last_heard >= since
        ]

    def status(self) -> dict[str, Any]:
        return {
            "receivers": [
                {"name": name, "link_mode": receiver.link_mode}
                | self.service.receiver_state[name].as_dict()
                for name, receiver in self.receivers.items()
            ],
            "stats": dict(self.service.stats),
            "unattributed": dict(self.decoder.unattributed),
            "simulated": self.simulation is not None,
        }

    # ---------------------------------------------------------------- binding, re-install

    def bind(self, meters: Sequence[Meter]) -> list[Meter]:
        """Wireless meters without a receiver get the one hearing them best, once one has
        heard them (until then they stay unbound; their first telegram binds them)."""
        heard = self._heard_ids()
        out = []
        for meter in meters:
            if meter.wireless and not meter.interface:
                identity = self.identity_of(meter, heard)
                best = self.best_for(identity) if identity is not None else None
                if best is not None:
                    meter = replace(meter, interface=best, enhanced_address=best)
            out.append(meter)
        return out

    def best_for(self, meter: MeterId) -> str | None:
        return self.service.best_receiver(meter, RSSI_WINDOW)

    def rebindings(self, meters: Sequence[Meter]) -> tuple[list[Rebinding], list[str]]:
        """For each wireless meter, the stronger receiver it should move to; and the meters
        no receiver heard in the last ``RSSI_WINDOW`` seconds (they stay where they are)."""
        heard = self._heard_ids()
        moves: list[Rebinding] = []
        silent: list[str] = []
        for meter in meters:
            identity = self.identity_of(meter, heard)
            levels = self.service.rssi_by_receiver(identity, RSSI_WINDOW) if identity else {}
            if not levels:
                silent.append(meter.key)
                continue
            best = max(levels, key=lambda name: levels[name])
            current = levels.get(meter.interface)
            if best == meter.interface:
                continue
            if current is None or levels[best] >= current + REINSTALL_MARGIN_DB:
                moves.append(Rebinding(meter.key, meter.interface, best, current, levels[best]))
        return moves, silent
