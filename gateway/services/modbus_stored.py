"""The Modbus map's source when continuous read mode is off: the latest stored values.

For each installed meter it serves the values of the meter's newest stored reading that has
values, as ``telegram_values`` gives them for the same reading: one value per numeric record,
the series identified by its DIF/VIF bytes, the same numbers. The store keeps the record
identity (the DIF..VIFE bytes, a repeat marked by ``FF k``), the quantity and unit by name, and
kind, flags, mantissa and exponent of every value. Function, storage, tariff, subunit and a
record error code are read from the DIF/VIF bytes by the decoder itself. The meter's identity
comes from the header of that reading's raw telegram while the store keeps it
(``store.raw_days``), else from the meter list. State and times come from the meter log.

Slots are in series order: the order in which the store first saw each series of the meter,
which is the meter's record order as long as its telegram keeps the same records.

Everything is cached per meter: a request costs a dictionary lookup. ``follow`` refreshes the
meters of each ``READINGS_STORED`` event in a worker thread, one meter per call, keeps the same
``MeterValues`` object when nothing changed (the register map caches the encoded registers on
it) and tells ``wait_changed`` which meters did.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import trio

from mbusgw.core import MBusError, decode_application
from mbusgw.core.units import UNIT_SYMBOLS, Quantity, Unit, quantity_name
from mbusgw.gateway.clock import WallClock
from mbusgw.gateway.errors import StoreError
from mbusgw.gateway.events import CYCLE_FINISHED, READINGS_STORED, Event, EventBus
from mbusgw.gateway.facade import Store
from mbusgw.gateway.meters import Meter
from mbusgw.gateway.services.modbus_source import (
    SCALABLE_KINDS,
    SECONDS_KINDS,
    ChangeFeed,
    CycleInfo,
    MeterIdentity,
    MeterState,
    MeterValues,
    SeriesValue,
    SourceKind,
    completed_cycle,
    identity_from_header,
    identity_from_meter,
    or_installed,
    record_number,
)
from mbusgw.gateway.store.model import ReadingStatus, SeriesInfo, ValueTable

logger = logging.getLogger("mbusgw.modbus")

DAY = 86_400
# How far back the meter log is read for the latest attempt, widened until one is found.
LOG_WINDOWS = (DAY, 32 * DAY, 400 * DAY)
REPEAT_MARK = 0xFF  # the store's suffix ``FF k`` on the k-th repeat of a record identity


@dataclass(frozen=True, slots=True)
class StoredMeter:
    """What the store says about one meter; the meter list is applied on top of it."""

    state: MeterState = MeterState.NEVER  # OK, FAILED or NEVER
    values: tuple[SeriesValue, ...] = ()
    header: MeterIdentity | None = None  # from the raw telegram of the values' reading
    status_byte: int | None = None  # as the meter log kept it, for when there is no header
    read_at: datetime | None = None
    attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SeriesFields:
    """What the decoder reads from a series' DIF/VIF bytes, and its codes from the stored names."""

    quantity: int
    unit: int
    function: int = 0
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    record_error: int = 0


class StoredValuesSource:
    """The ``ModbusSource`` over the store (``SourceKind.STORE``)."""

    kind = SourceKind.STORE

    def __init__(
        self,
        store: Store,
        meters: Callable[[], Sequence[Meter]],
        clock: WallClock,
        events: EventBus,
    ) -> None:
        self._store = store
        self._meters = meters
        self._clock = clock
        self._events = events
        self._cache: dict[str, tuple[Meter, StoredMeter, MeterValues]] = {}
        self._cycle: CycleInfo | None = None
        self._changes = ChangeFeed()

    def meters(self) -> Sequence[Meter]:
        return self._meters()

    def values(self, meter: Meter) -> MeterValues:
        cached = self._cache.get(meter.key)
        if cached is not None and cached[0] is meter:
            return cached[2]
        if cached is not None:  # the meter changed in the list, not in the store
            stored = cached[1]
        else:  # not loaded yet (a newly installed meter, or before the first refresh)
            stored = load_stored(self._store, [meter.key], self._now())[meter.key]
        result = meter_values(meter, stored)
        self._cache[meter.key] = (meter, stored, result)
        return result

    def state(self, meter: Meter) -> MeterState:
        return self.values(meter).state  # the values are in memory already

    def last_cycle(self) -> CycleInfo | None:
        return self._cycle

    @property
    def version(self) -> int:
        return self._changes.version

    async def wait_changed(self, version: int) -> tuple[int, set[str] | None]:
        return await self._changes.wait_changed(version)

    async def follow(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Load every installed meter, then refresh the meters whose readings were stored and
        note each complete reading cycle."""
        with self._events.subscribe() as events:
            # a cycle that ended before this start (the start-up read, or before a restart of
            # the service) counts: it is the last complete one until the next
            self._cycle = completed_cycle(self._events.latest(CYCLE_FINISHED), self.meters())
            # loaded before the service serves: no request waits for the store
            await self._refresh({meter.key for meter in self.meters()})
            task_status.started()
            async for event in events:
                stale = self._note(event)
                while True:  # take what else is queued already: one refresh for all of it
                    try:
                        stale |= self._note(events.receive_nowait())
                    except trio.WouldBlock:
                        break
                if stale:
                    await self._refresh(stale & set(self._cache))

    def _note(self, event: Event) -> set[str]:
        """The meters an event makes stale; a complete cycle is remembered."""
        if event.kind == READINGS_STORED:
            return set(event.detail.get("meters", ()))
        if event.kind == CYCLE_FINISHED:
            self._cycle = completed_cycle(event, self.meters()) or self._cycle
        return set()

    async def _refresh(self, keys: set[str]) -> None:
        # One meter per worker-thread call: a refresh of every meter would hold the
        # interpreter lock for tens of ms, and each request waits for it; between the calls
        # the event loop answers requests, and the image of each meter is made as it comes.
        for key in sorted(keys):
            fresh = await trio.to_thread.run_sync(load_stored, self._store, [key], self._now())
            self._changes.publish(self._apply(fresh))

    def _apply(self, fresh: dict[str, StoredMeter]) -> set[str]:
        """Take the fresh stored state; returns the meters whose values changed."""
        changed = set()
        for key, stored in fresh.items():
            cached = self._cache.get(key)
            if cached is not None and cached[1] == stored:
                continue  # unchanged: the map keeps its encoded registers
            if cached is not None:
                meter: Meter | None = cached[0]
            else:  # loaded for the first time
                meter = next((m for m in self.meters() if m.key == key), None)
            if meter is not None:
                self._cache[key] = (meter, stored, meter_values(meter, stored))
                changed.add(key)
        return changed

    def _now(self) -> float:
        return self._clock.now().timestamp()


def meter_values(meter: Meter, stored: StoredMeter) -> MeterValues:
    """The stored state under the meter list: passive meters, the installed identity."""
    state = stored.state if meter.active else MeterState.PASSIVE
    if stored.header is not None:
        identity = or_installed(stored.header, meter)
    else:
        identity = replace(identity_from_meter(meter), status_byte=stored.status_byte)
    return MeterValues(state, identity, stored.values, stored.read_at, stored.attempt_at)


# -- reading the store (in a worker thread) ---------------------------------------------------


def load_stored(store: Store, keys: Sequence[str], now: float) -> dict[str, StoredMeter]:
    """The stored state of each meter. A store error (a damaged block) is logged and leaves
    only the meters it concerns without values."""
    try:
        return _load(store, keys, now)
    except StoreError as error:
        if len(keys) == 1:
            logger.warning("stored values of meter %s unreadable: %s", keys[0], error)
            return {keys[0]: StoredMeter()}
        return {k: v for key in keys for k, v in load_stored(store, [key], now).items()}


def _load(store: Store, keys: Sequence[str], now: float) -> dict[str, StoredMeter]:
    found = {info.name for info in store.meters()}
    wanted = [key for key in keys if key in found]
    out = {key: StoredMeter() for key in keys}
    if not wanted:
        return out
    table = store.latest(wanted)  # before the series: every series it names is known then
    series: dict[int, SeriesInfo] = {}
    signatures: dict[str, set[bytes]] = {key: set() for key in wanted}
    for info in store.series():
        if info.meter in signatures:
            series[info.id] = info
            signatures[info.meter].add(info.signature)
    rows: dict[str, list[int]] = {}
    for row, series_id in enumerate(table.series.tolist()):
        rows.setdefault(series[series_id].meter, []).append(row)
    for key in wanted:
        out[key] = _stored_meter(store, key, table, rows.get(key, []), series, signatures[key], now)
    return out


def _stored_meter(
    store: Store,
    key: str,
    table: ValueTable,
    rows: list[int],
    series: dict[int, SeriesInfo],
    signatures: set[bytes],
    now: float,
) -> StoredMeter:
    received = table.received_at[rows] if rows else np.zeros(0, np.int64)
    values_at = int(received.max()) if len(received) else None
    log = list(_recent_log(store, key, values_at, now))
    if not log:
        return StoredMeter()
    last = log[-1]
    state = MeterState.OK if last.status == ReadingStatus.OK else MeterState.FAILED
    good = [e for e in log if e.status == ReadingStatus.OK]
    if good and (values_at is None or good[-1].received_at > values_at):
        read_at, values = good[-1].received_at, ()  # a good reading without values
    elif values_at is not None:
        picked = sorted(
            (row for row, at in zip(rows, received.tolist(), strict=True) if at == values_at),
            key=lambda row: int(table.series[row]),
        )
        read_at, values = values_at, _series_values(table, picked, series, signatures)
    else:
        return StoredMeter(state, attempt_at=_utc(last.received_at))
    entry = next((e for e in reversed(log) if e.received_at == read_at), None)
    return StoredMeter(
        state,
        values,
        _header(store, key, read_at),
        entry.status_byte if entry is not None else None,
        _utc(read_at),
        _utc(last.received_at),
    )


def _recent_log(store: Store, key: str, values_at: int | None, now: float) -> Iterable[Any]:
    """The meter log from the values' reading on, or of the latest days that have entries."""
    for window in LOG_WINDOWS:
        since = now - window if values_at is None else max(values_at, now - window)
        log = store.meter_log(key, since)
        if len(log):
            return log
    return store.meter_log(key, values_at)


def _header(store: Store, key: str, at: int) -> MeterIdentity | None:
    """The identity in the header of the reading's first telegram, while its raw telegrams are
    kept (stored with them: nothing is decoded again here)."""
    raw = store.raw_telegrams(key, at, at + 1)
    if not raw or raw[-1].header is None:
        return None
    return identity_from_header(raw[-1].header)


def _series_values(
    table: ValueTable,
    rows: list[int],
    series: dict[int, SeriesInfo],
    signatures: set[bytes],
) -> tuple[SeriesValue, ...]:
    out = []
    reals = table.mantissa.view(np.float64)
    for row in rows:
        kind = int(table.kind[row])
        if kind not in SCALABLE_KINDS and kind not in SECONDS_KINDS:
            continue  # text and bytes have no slot
        info = series[int(table.series[row])]
        signature = record_signature(info.signature, signatures)
        fields = series_fields(signature, info.quantity, info.unit, info.description)
        number = record_number(
            kind,
            int(table.flags[row]),
            fields.record_error,
            int(table.mantissa[row]),
            int(table.exponent[row]),
            float(reals[row]),
        )
        out.append(
            SeriesValue(
                signature,
                number,
                kind in SCALABLE_KINDS,
                fields.quantity,
                fields.unit,
                fields.function,
                fields.storage,
                fields.tariff,
                fields.subunit,
            )
        )
    return tuple(out)


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# -- series identities -------------------------------------------------------------------------


def record_signature(signature: bytes, meter_signatures: set[bytes]) -> bytes:
    """The record's DIF/VIF bytes: without the store's ``FF k`` repeat suffix. The suffix is
    recognised by the first occurrence, which the meter always has as a series of its own (a
    complete DIF..VIFE chain is never the beginning of another)."""
    first = signature[:-2]
    if len(signature) >= 3 and signature[-2] == REPEAT_MARK and first in meter_signatures:
        return first
    return signature


# A data field for any DIF (up to 8 bytes, or an empty LVAR) followed by idle fillers (0x2F).
_DATA_FILLER = b"\x00" + b"\x2f" * 8
_NO_HEADER_CI = 0x78
_STORAGE_WORDS = re.compile(r"(?:^|, )storage (\d+)(?:,|$)")


@functools.lru_cache(maxsize=16384)
def series_fields(signature: bytes, quantity: str, unit: str, description: str) -> SeriesFields:
    """Function, storage, tariff, subunit and record error as the decoder reads the DIF/VIF
    bytes (decoding them as a record with an empty data field); quantity and unit codes from
    the stored names. A fixed data structure record (CI 0x73: one unit byte, not a DIF) is
    instantaneous with the storage number its description names."""
    quantity_code = quantity_number(quantity)
    unit_code = unit_number(unit, quantity_code)
    try:
        array = decode_application(_NO_HEADER_CI, signature + _DATA_FILLER).array
    except MBusError:
        array = None
    if array is None or not len(array) or int(array["difvif_length"][0]) != len(signature):
        match = _STORAGE_WORDS.search(description)
        return SeriesFields(quantity_code, unit_code, storage=int(match[1]) if match else 0)
    record = array[0]
    return SeriesFields(
        quantity_code,
        unit_code,
        int(record["function"]),
        int(record["storage"]),
        int(record["tariff"]),
        int(record["subunit"]),
        int(record["record_error"]),
    )


_QUANTITY_CODES = {quantity_name(code): int(code) for code in Quantity}
_UNIT_CODES = {
    symbol: int(code) for code, symbol in UNIT_SYMBOLS.items() if code != Unit.PLAIN_TEXT
}
_UNKNOWN_CODE = re.compile(r"(?:quantity|unit)_(\d+)")


def quantity_number(name: str) -> int:
    """The ``Quantity`` code of a stored quantity name (the decoder's ``quantity_N`` for codes
    the table does not name)."""
    code = _QUANTITY_CODES.get(name)
    if code is not None:
        return code
    match = _UNKNOWN_CODE.fullmatch(name)
    return int(match[1]) if match else int(Quantity.UNKNOWN)


def unit_number(name: str, quantity: int) -> int:
    """The ``Unit`` code of a stored unit name. A plain-text VIF's unit is its text."""
    if quantity == Quantity.PLAIN_TEXT:
        return int(Unit.PLAIN_TEXT)
    code = _UNIT_CODES.get(name)
    if code is not None:
        return code
    match = _UNKNOWN_CODE.fullmatch(name)
    return int(match[1]) if match else int(Unit.PLAIN_TEXT)
