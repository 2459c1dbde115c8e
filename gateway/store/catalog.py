"""Meters and series: names and record identities to small integer ids, cached in memory.

Ids are allocated inside write transactions. What a transaction allocates stays in a pending
overlay (``CatalogBatch``) and reaches the shared cache only after the durable commit, so an
aborted or retried batch can never leave an id in memory that the file does not have.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterable
from sys import intern

import lmdb

from mbusgw.gateway.store.env import Databases, get_u64, put_u64
from mbusgw.gateway.store.keys import (
    U32_MAX,
    id_key,
    series_index_key,
    text_key,
    unpack_id_key,
)
from mbusgw.gateway.store.model import MeterInfo, SeriesInfo, SeriesSpec

_U32 = struct.Struct("<I")


def _record(info: MeterInfo | SeriesInfo) -> bytes:
    if isinstance(info, MeterInfo):
        return json.dumps({"name": info.name, "created": info.created}).encode()
    return json.dumps(
        {
            "meter": info.meter,
            "signature": info.signature.hex(),
            "quantity": info.quantity,
            "unit": info.unit,
            "description": info.description,
        }
    ).encode()


def meter_from_record(meter_id: int, raw: bytes) -> MeterInfo:
    record = json.loads(raw)
    return MeterInfo(meter_id, record["name"], record["created"])


def series_from_record(series_id: int, raw: bytes) -> SeriesInfo:
    record = json.loads(raw)
    # json.loads makes a string of every value: interned, the few quantities, units and
    # descriptions and each meter's name are held once for the thousands of series of a site
    return SeriesInfo(
        series_id,
        intern(record["meter"]),
        bytes.fromhex(record["signature"]),
        intern(record["quantity"]),
        intern(record["unit"]),
        intern(record["description"]),
    )


class Catalog:
    """The committed meters and series, loaded lazily and refreshed on a miss."""

    def __init__(self, db: Databases) -> None:
        self._db = db
        self._lock = threading.Lock()  # readers refresh while the writer publishes
        self.meter_ids: dict[str, int] = {}
        self.meters: dict[int, MeterInfo] = {}
        self.series_ids: dict[tuple[int, bytes], int] = {}
        self.series: dict[int, SeriesInfo] = {}
        self.meter_series: dict[int, list[int]] = {}

    def refresh(self, txn: lmdb.Transaction) -> None:
        """Load every meter and series (hundreds of meters, thousands of series: milliseconds)."""
        meters = [meter_from_record(unpack_id_key(k), v) for k, v in txn.cursor(db=self._db.meters)]
        series = [
            series_from_record(unpack_id_key(k), v) for k, v in txn.cursor(db=self._db.series)
        ]
        self.publish(meters, series)

    def sync(self, txn: lmdb.Transaction) -> None:
        """Refresh only if another process (or a new batch) added meters or series."""
        meters = txn.stat(self._db.meters)["entries"]
        series = txn.stat(self._db.series)["entries"]
        if meters != len(self.meters) or series != len(self.series):
            self.refresh(txn)

    def _add_meter(self, info: MeterInfo) -> None:
        self.meters[info.id] = info
        self.meter_ids[info.name] = info.id
        self.meter_series.setdefault(info.id, [])

    def _add_series(self, info: SeriesInfo) -> None:
        meter_id = self.meter_ids[info.meter]
        if info.id not in self.series:
            self.meter_series.setdefault(meter_id, []).append(info.id)
        self.series[info.id] = info
        self.series_ids[(meter_id, info.signature)] = info.id

    def meter_id(self, txn: lmdb.Transaction, name: str) -> int | None:
        if name not in self.meter_ids:
            self.refresh(txn)
        return self.meter_ids.get(name)

    def series_info(self, txn: lmdb.Transaction, series_id: int) -> SeriesInfo | None:
        if series_id not in self.series:
            self.refresh(txn)
        return self.series.get(series_id)

    def publish(self, meters: Iterable[MeterInfo], series: Iterable[SeriesInfo]) -> None:
        with self._lock:
            for meter in meters:
                self._add_meter(meter)
            for info in series:
                self._add_series(info)


class CatalogBatch:
    """Id allocation inside one write transaction, with checkpoints for nested operations."""

    def __init__(self, catalog: Catalog, txn: lmdb.Transaction, db: Databases) -> None:
        self.catalog = catalog
        self.txn = txn
        self.db = db
        self.new_meters: dict[str, MeterInfo] = {}
        self.new_series: dict[tuple[int, bytes], SeriesInfo] = {}

    def checkpoint(self) -> tuple[int, int]:
        return len(self.new_meters), len(self.new_series)

    def rollback(self, checkpoint: tuple[int, int]) -> None:
        meters, series = checkpoint
        while len(self.new_meters) > meters:
            self.new_meters.popitem()
        while len(self.new_series) > series:
            self.new_series.popitem()

    def publish(self) -> None:
        """After the commit: make this batch's meters and series visible to everyone."""
        self.catalog.publish(self.new_meters.values(), self.new_series.values())

    def meter_id(self, name: str, now: int) -> int:
        known = self.catalog.meter_ids.get(name)
        if known is not None:
            return known
        new = self.new_meters.get(name)
        if new is not None:
            return new.id
        raw = self.txn.get(text_key(name), db=self.db.meter_index)
        if raw is not None:  # committed by another process after the cache was loaded
            return _U32.unpack(raw)[0]
        meter_id = self._allocate(b"next_meter")
        info = MeterInfo(meter_id, name, now)
        self.txn.put(text_key(name), _U32.pack(meter_id), db=self.db.meter_index)
        self.txn.put(id_key(meter_id), _record(info), db=self.db.meters)
        self.new_meters[name] = info
        return meter_id

    def series_id(self, meter_id: int, meter: str, spec: SeriesSpec, signature: bytes) -> int:
        """The id of ``signature`` (the spec's, or with an occurrence suffix) on a meter."""
        key = (meter_id, signature)
        known = self.catalog.series_ids.get(key)
        if known is not None:
            return known
        new = self.new_series.get(key)
        if new is not None:
            return new.id
        index_key = series_index_key(meter_id, signature)
        raw = self.txn.get(index_key, db=self.db.series_index)
        if raw is not None:
            return _U32.unpack(raw)[0]
        series_id = self._allocate(b"next_series")
        info = SeriesInfo(series_id, meter, signature, spec.quantity, spec.unit, spec.description)
        self.txn.put(index_key, _U32.pack(series_id), db=self.db.series_index)
        self.txn.put(id_key(series_id), _record(info), db=self.db.series)
        self.new_series[key] = info
        return series_id

    def _allocate(self, counter: bytes) -> int:
        number = get_u64(self.txn, self.db.meta, counter, 1)
        if number > U32_MAX:
            raise OverflowError(f"{counter.decode()} exhausted")
        put_u64(self.txn, self.db.meta, counter, number + 1)
        return number
