"""Where the Modbus map gets its values: the protocol, the value model, and the source over the
continuous-read snapshot.

A source lists the installed meters (their order gives the meter index) and, per meter, the
values of its latest good reading with their age, the outcome of the latest attempt and the
meter's identity. ``values()`` is called on every Modbus request, so it must be cheap, and it
returns the *same object* while nothing changed: the register map caches the encoded registers
on that identity.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Protocol

import trio

from mbusgw.core.units import Flag, ValueKind
from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.events import CYCLE_FINISHED, Event, EventBus
from mbusgw.gateway.facade import value_flags
from mbusgw.gateway.live import LiveReading, LiveSnapshot
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.modbus_encoding import Number


class SourceKind(IntEnum):
    """Register 2 of the device block."""

    LIVE = 1  # the continuous-read snapshot (RAM only)
    STORE = 2  # the latest stored values


class MeterState(IntEnum):
    """Register 0 of a meter block."""

    OK = 0  # the latest reading succeeded
    FAILED = 1  # the latest reading failed; values (if any) are from the last good one
    NEVER = 2  # not read yet: no values
    PASSIVE = 3  # installed but not read (beyond the capacity, or switched off)


@dataclass(frozen=True, slots=True)
class SeriesValue:
    """One value of a reading. ``series`` (the record's DIF/VIF bytes) identifies the series;
    ``number`` is None when the record has no usable number (flagged invalid, BCD error, no
    data). ``scalable`` is false for dates and times: they are seconds and the constant does not
    apply to them."""

    series: bytes
    number: Number | None
    scalable: bool = True
    quantity: int = 0
    unit: int = 0
    function: int = 0
    storage: int = 0
    tariff: int = 0
    subunit: int = 0


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """What the meter says it is (from its latest telegram, else from the installation)."""

    id: int | None = None  # the identification number's 8 nibbles (``id_number``)
    manufacturer: int | None = None  # EN 13757-3 code: three letters, five bits each
    version: int | None = None
    medium: int | None = None
    access_number: int | None = None
    status_byte: int | None = None


@dataclass(frozen=True, slots=True)
class MeterValues:
    state: MeterState
    identity: MeterIdentity
    values: tuple[SeriesValue, ...] = ()
    read_at: datetime | None = None  # when the values were read (None: no values)
    attempt_at: datetime | None = None  # the latest attempt, good or failed


@dataclass(frozen=True, slots=True)
class CycleInfo:
    finished_at: datetime
    duration_s: float


def completed_cycle(event: Event | None, meters: Sequence[Meter]) -> CycleInfo | None:
    """The reading cycle a ``CYCLE_FINISHED`` event reports, if it read every active meter (a
    retry of a few meters is not a cycle)."""
    if event is None or "duration_s" not in event.detail:
        return None
    active = sum(1 for meter in meters if meter.active)
    if event.detail.get("meters", 0) < active:
        return None
    return CycleInfo(event.at, event.detail["duration_s"])


class ModbusSource(Protocol):
    kind: SourceKind

    def meters(self) -> Sequence[Meter]:
        """The installed meters in list order (index 1 is the first); the same sequence object
        while the meter list is unchanged."""
        ...

    def values(self, meter: Meter) -> MeterValues: ...

    def state(self, meter: Meter) -> MeterState:
        """``values(meter).state``, without making the values where that costs more."""
        ...

    def last_cycle(self) -> CycleInfo | None:
        """The latest complete reading cycle (every active meter read once)."""
        ...

    async def follow(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Keep what the source derives (cycle times) current; runs while the service runs."""
        ...

    @property
    def version(self) -> int:
        """Grows whenever a meter's values may have changed."""
        ...

    async def wait_changed(self, version: int) -> tuple[int, set[str] | None]:
        """Wait until the source is newer than ``version``; returns the new version and the
        meters whose values changed since (None: any may have, when too many changed)."""
        ...


class ChangeFeed:
    """Which meters changed, as a version and the recent changes (the snapshot's way)."""

    RECENT = 256

    def __init__(self) -> None:
        self.version = 0
        self._recent: deque[set[str]] = deque(maxlen=self.RECENT)
        self._changed = trio.Event()

    def publish(self, keys: set[str]) -> None:
        if not keys:
            return
        self.version += 1
        self._recent.append(keys)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self, version: int) -> tuple[int, set[str] | None]:
        while self.version <= version:
            await self._changed.wait()
        count = self.version - version
        if count > len(self._recent):
            return self.version, None
        return self.version, set().union(
            *itertools.islice(self._recent, len(self._recent) - count, None)
        )


ValueReader = Callable[[tuple[Any, ...]], tuple[MeterIdentity, tuple[SeriesValue, ...]]]
"""Turns the decoded telegrams of one reading into the meter's identity and its values."""


def identity_from_meter(meter: Meter) -> MeterIdentity:
    return MeterIdentity(
        id=id_number(meter.secondary_address),
        manufacturer=manufacturer_code(meter.manufacturer),
        version=meter.version,
        medium=meter.medium,
    )


def identity_from_header(header: Any) -> MeterIdentity:
    """The identity a telegram's header tells (``mbusgw.core.records.Header``)."""
    return MeterIdentity(
        id_number(header.id),
        manufacturer_code(header.manufacturer),
        header.version,
        header.medium,
        header.access_number,
        header.status,
    )


def or_installed(identity: MeterIdentity, meter: Meter) -> MeterIdentity:
    """A telegram without address fields (CI 0x78: no header) leaves the installed identity."""
    if identity.id is None and identity.manufacturer is None:
        return identity_from_meter(meter)
    return identity


_NIBBLES = frozenset("0123456789ABCDEFabcdef")


def id_number(text: str | None) -> int | None:
    """The identification number's nibbles as they are on the wire (BCD, and hex digits kept):
    "12345678" → 0x12345678, "1234ABCD" → 0x1234ABCD. Many meters put hex digits in their ID,
    so reading it as a decimal number would lose them. None for a missing or malformed ID."""
    if not text or len(text) > 8 or not _NIBBLES.issuperset(text):
        return None
    return int(text, 16)


def manufacturer_code(letters: str | None) -> int | None:
    """ "ELV" → the EN 13757-3 manufacturer code (5 bits per letter, 'A' = 1)."""
    if letters is None or len(letters) != 3 or not letters.isalpha() or not letters.isupper():
        return None
    code = 0
    for letter in letters:
        code = code << 5 | (ord(letter) - 64)
    return code


# Kinds that get a slot: numbers (scaled by the constant) and dates and times (seconds).
SCALABLE_KINDS = frozenset({ValueKind.DECIMAL, ValueKind.REAL, ValueKind.NONE, ValueKind.BCD_ERROR})
SECONDS_KINDS = frozenset({ValueKind.DATE, ValueKind.DATETIME, ValueKind.TIME})
_COLUMNS = (
    "kind", "flags", "record_error", "mantissa", "exponent", "real", "quantity", "unit",
    "function", "storage", "tariff", "subunit", "difvif_offset", "difvif_length",
)  # fmt: skip


def telegram_values(telegrams: tuple[Any, ...]) -> tuple[MeterIdentity, tuple[SeriesValue, ...]]:
    """The identity (from the first telegram's header) and the numeric values of a reading's
    decoded telegrams, in record order. Text and raw bytes (manufacturer data) have no number
    and get no slot; a value the meter flagged invalid, a BCD error or an empty record keep their
    slot with no number. Dates and times are seconds (Unix time; seconds since midnight)."""
    if not telegrams:
        return MeterIdentity(), ()
    identity = identity_from_header(telegrams[0].header)
    values: list[SeriesValue] = []
    for telegram in telegrams:
        array, payload = telegram.array, telegram.payload
        # the flags as the store and the API have them (a record error is invalid)
        columns = [
            (value_flags(array) if name == "flags" else array[name]).tolist() for name in _COLUMNS
        ]
        for kind, flags, error, mantissa, exponent, real, *codes, offset, length in zip(
            *columns, strict=True
        ):
            if kind not in SCALABLE_KINDS and kind not in SECONDS_KINDS:
                continue
            values.append(
                SeriesValue(
                    payload[offset : offset + length],
                    record_number(kind, flags, error, mantissa, exponent, real),
                    kind in SCALABLE_KINDS,
                    *codes,
                )
            )
    return identity, tuple(values)


# plain ints: an ``IntFlag`` on the right of ``&`` runs its Python-level ``__rand__`` per record
_INVALID = int(Flag.INVALID)
_NO_NUMBER = frozenset({int(ValueKind.NONE), int(ValueKind.BCD_ERROR)})
_REAL, _DECIMAL = int(ValueKind.REAL), int(ValueKind.DECIMAL)


def record_number(
    kind: int, flags: int, record_error: int, mantissa: int, exponent: int, real: float
) -> Number | None:
    """A record's number; None when it is flagged invalid (``value_flags``: the meter's flag or a
    record error; ``record_error`` also counts for readings stored before the store kept that
    in the flags), for a BCD error and for an empty record."""
    if flags & _INVALID or record_error or kind in _NO_NUMBER:
        return None
    if kind == _REAL:
        return Number(exponent=exponent, real=real)
    if kind == _DECIMAL:
        return Number(mantissa, exponent)
    return Number(mantissa)  # seconds


def _live_state(meter: Meter, latest: LiveReading | None) -> MeterState:
    if not meter.active:
        return MeterState.PASSIVE
    if latest is None:
        return MeterState.NEVER
    return MeterState.OK if latest.ok else MeterState.FAILED


# How often the live source looks whether a reading cycle is complete. The cycle's end is the
# time its last meter was read, whenever that is seen.
FOLLOW_INTERVAL = 1.0


class LiveSnapshotSource:
    """Values from the continuous-read snapshot: the last good reading of each meter."""

    kind = SourceKind.LIVE

    def __init__(
        self,
        snapshot: LiveSnapshot,
        meters: Callable[[], Sequence[Meter]],
        clock: WallClock,
        read_values: ValueReader = telegram_values,
        events: EventBus | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._meters = meters
        self._read_values = read_values
        self._clock = clock
        self._events = events
        self._cache: dict[str, tuple[LiveReading | None, LiveReading | None, Meter, MeterValues]]
        self._cache = {}
        self._cycle: CycleInfo | None = None

    def meters(self) -> Sequence[Meter]:
        return self._meters()

    def values(self, meter: Meter) -> MeterValues:
        latest = self._snapshot.latest(meter.key)
        good = self._snapshot.last_good(meter.key)
        cached = self._cache.get(meter.key)
        if cached is not None and cached[0] is latest and cached[1] is good and cached[2] is meter:
            return cached[3]
        previous = cached[3] if cached is not None and cached[1] is good else None
        result = self._build(meter, latest, good, previous)
        self._cache[meter.key] = (latest, good, meter, result)
        return result

    def state(self, meter: Meter) -> MeterState:
        return _live_state(meter, self._snapshot.latest(meter.key))

    def _build(
        self,
        meter: Meter,
        latest: LiveReading | None,
        good: LiveReading | None,
        previous: MeterValues | None,
    ) -> MeterValues:
        state = _live_state(meter, latest)
        attempt_at = latest.read_at if latest is not None else None
        if good is None:
            return MeterValues(state, identity_from_meter(meter), attempt_at=attempt_at)
        if previous is not None:  # only the latest attempt changed: the values did not
            identity, values = previous.identity, previous.values
        else:
            identity, values = self._read_values(good.telegrams)
            identity = or_installed(identity, meter)
        return MeterValues(state, identity, values, good.read_at, attempt_at or good.read_at)

    def last_cycle(self) -> CycleInfo | None:
        return self._cycle

    @property
    def version(self) -> int:
        return self._snapshot.version

    async def wait_changed(self, version: int) -> tuple[int, set[str] | None]:
        await self._snapshot.wait_for_change(version)
        new, updates = self._snapshot.changes_after(version)
        if len(updates) != new - version:
            return new, None
        return new, {reading.meter_key for reading in updates}

    def _drop_updated(
        self, seen: dict[str, LiveReading | None], previous: int
    ) -> tuple[int, datetime | None]:
        """Remove from ``seen`` the meters with a new reading since ``previous``: from the
        snapshot's list of recent updates, or by comparing every meter if it fell behind that.
        Returns the version this covers and when the latest of the removed meters was read
        (None: none was removed)."""
        version, updates = self._snapshot.changes_after(previous)
        removed: list[LiveReading] = []
        if len(updates) == version - previous:
            for reading in updates:
                if reading.meter_key in seen:
                    del seen[reading.meter_key]
                    removed.append(reading)
        else:
            for key, before in list(seen.items()):
                latest = self._snapshot.latest(key)
                if latest is not before:
                    del seen[key]
                    if latest is not None:
                        removed.append(latest)
        return version, max((reading.read_at for reading in removed), default=None)

    async def follow(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """A cycle ends when every active meter has had a new attempt since the cycle began
        (meters removed or made passive meanwhile no longer count), when the last of them was
        read. It looks every ``FOLLOW_INTERVAL`` rather than waiting for each reading: a task
        waiting on the snapshot would make the line threads hand every reading back to trio."""
        version = self._snapshot.version
        started = self._clock.now()
        if self._events is not None:  # a read of every meter before this start (at start-up)
            self._cycle = completed_cycle(self._events.latest(CYCLE_FINISHED), self.meters())
        task_status.started()
        while True:
            seen = {m.key: self._snapshot.latest(m.key) for m in self.meters() if m.active}
            finished = started
            while seen:
                previous = version
                await trio.sleep(FOLLOW_INTERVAL)
                version, read_at = self._drop_updated(seen, previous)
                if read_at is not None:
                    finished = max(finished, read_at)
                if seen:  # the meters still missing may be gone or passive by now
                    active = {m.key for m in self.meters() if m.active}
                    for key in seen.keys() - active:
                        del seen[key]
            if not any(m.active for m in self.meters()):
                await trio.sleep(1.0)  # nothing to read: check the meter list again later
                started = self._clock.now()
                continue
            self._cycle = CycleInfo(finished, (finished - started).total_seconds())
            started = finished
