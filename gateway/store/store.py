"""``Store``: an open store file, its queries, and synchronous writes for tools.

Inside the gateway every write goes through the one ``StoreWriter`` task; ``Store.write`` is
for command-line tools and tests, which have no trio loop, and is refused while a writer runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO, TypeVar

from mbusgw.gateway.clock import SystemClock, WallClock
from mbusgw.gateway.errors import StoreError
from mbusgw.gateway.settings import Settings
from mbusgw.gateway.store import records, syslog_table
from mbusgw.gateway.store.batch import BatchRunner, WriteOp
from mbusgw.gateway.store.catalog import Catalog
from mbusgw.gateway.store.check import find_problems
from mbusgw.gateway.store.clear_secrets import count_unreadable
from mbusgw.gateway.store.context import WriteContext
from mbusgw.gateway.store.env import (
    COUNT_READINGS,
    COUNT_VALUES,
    DB_NAMES,
    DEFAULT_MAP_SIZE,
    FILE_NAME,
    StoreEnv,
    get_u64,
)
from mbusgw.gateway.store.ingest import Receipt, admit, write_readings
from mbusgw.gateway.store.migrations import SCHEMA_VERSION, open_env
from mbusgw.gateway.store.model import (
    MeterInfo,
    MeterLog,
    ReadingValues,
    SeriesInfo,
    StoredReading,
    ValueTable,
)
from mbusgw.gateway.store.queries import Queries, RawTelegram, time_bounds
from mbusgw.gateway.store.settings_table import read_settings, update_settings
from mbusgw.gateway.store.syslog import LogEntry, SystemLog
from mbusgw.gateway.store.syslog_table import EVERYTHING, LogFilter

T = TypeVar("T")


def store_path(data_dir: str | os.PathLike[str]) -> Path:
    """Where the store lives in a gateway data directory."""
    return Path(data_dir) / FILE_NAME


@dataclass(frozen=True, slots=True)
class TableStats:
    entries: int
    bytes: int  # pages in use × page size


@dataclass(frozen=True, slots=True)
class StoreStats:
    path: str
    file_bytes: int
    map_bytes: int
    used_bytes: int
    meters: int
    series: int
    readings: int
    values: int
    rows_waiting: int  # readings not compacted yet
    blocks: int
    raw_telegrams: int
    log_entries: int
    log_bytes: int
    oldest: int | None  # reception time of the oldest stored reading
    newest: int | None
    tables: dict[str, TableStats]


class Store:
    """An open store. Reads are safe from any thread; see the module note about writes."""

    def __init__(self, env: StoreEnv, clock: WallClock) -> None:
        self.env = env
        self.clock = clock
        unreadable = 0 if env.readonly else count_unreadable(env)
        self.catalog = Catalog(env.db)
        with env.read() as txn:
            self.catalog.refresh(txn)
            settings = read_settings(txn, env)
        self.log = SystemLog(clock, min_level=settings.log.min_level)
        if unreadable:
            self.log.warning(
                "store",
                f"{unreadable} stored secrets do not open with the key file "
                f"{env.sealer.source} (the store was moved without it?): they read as unset",
            )
        self.queries = Queries(env, self.catalog)
        self.runner = BatchRunner(env, self.catalog, settings)
        self.runner.on_settings_changed = self._settings_changed
        self.writer_running = False
        if env.migrated is not None:
            old, copy = env.migrated
            text = f"store migrated from format {old} to {SCHEMA_VERSION}"
            if copy is not None:
                text += f"; the old store (its secrets sealed) is kept as {copy.name}"
            self.log.log(0, "store", text)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        clock: WallClock | None = None,
        map_size: int = DEFAULT_MAP_SIZE,
    ) -> Store:
        env = open_env(Path(path), readonly=readonly, map_size=map_size)
        try:
            return cls(env, clock or SystemClock())
        except BaseException:
            env.close()
            raise

    @property
    def path(self) -> Path:
        return self.env.path

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> float:
        """The wall clock as seconds since the epoch (UTC)."""
        return self.clock.now().timestamp()

    @property
    def settings(self) -> Settings:
        """The settings as this process last committed or loaded them."""
        return self.runner.settings

    def _settings_changed(self, settings: Settings) -> None:
        self.log.min_level = settings.log.min_level

    # -- synchronous writes (tools and tests) ------------------------------------------------

    def write(self, fn: Callable[[WriteContext], T]) -> T:
        """Run ``fn`` in one durable transaction, with the pending system log entries."""
        if self.env.readonly:
            raise StoreError("the store is open read-only")
        if self.writer_running:
            raise StoreError("a StoreWriter owns this store: submit writes to it")
        op = WriteOp(fn)
        self.runner.run([op], self.log.take(), self.now())
        return op.outcome()

    def put_readings(self, readings: Sequence[StoredReading]) -> Receipt:
        """Store readings in one transaction; a reading the store cannot take is refused alone
        (logged, and named in ``Receipt.refused``)."""
        good, refused = admit(readings, self.log)
        return replace(self.write(lambda ctx: write_readings(ctx, good)), refused=refused)

    def update_settings(self, changes: dict[str, Any]) -> Settings:
        """Merge and validate ``changes`` (nested), store all or nothing (``ConfigError``)."""
        return self.write(lambda ctx: update_settings(ctx, changes))

    def put_record(self, table: str, name: str, record: object) -> None:
        records.table(self.env.db, table)
        self.write(lambda ctx: records.put_record(ctx, table, name, record))

    def delete_record(self, table: str, name: str) -> bool:
        records.table(self.env.db, table)
        return self.write(lambda ctx: records.delete_record(ctx, table, name))

    # -- reads -----------------------------------------------------------------------------

    def meters(self) -> list[MeterInfo]:
        with self.env.read() as txn:
            self.catalog.sync(txn)
        return sorted(list(self.catalog.meters.values()), key=lambda m: m.id)

    def stored_meters(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` that have anything stored, in their order: one look at the
        catalog, whatever the number of meters stored."""
        with self.env.read() as txn:
            self.catalog.sync(txn)
        known = self.catalog.meter_ids
        return [name for name in names if name in known]

    def meter(self, name: str) -> MeterInfo | None:
        with self.env.read() as txn:
            meter_id = self.catalog.meter_id(txn, name)
        return None if meter_id is None else self.catalog.meters[meter_id]

    def series(self, meter: str | None = None) -> list[SeriesInfo]:
        """All series, or those of one meter, by id."""
        with self.env.read() as txn:
            self.catalog.sync(txn)
        found = list(self.catalog.series.values())  # one C-level copy: the writer may add more
        return sorted((s for s in found if meter is None or s.meter == meter), key=lambda s: s.id)

    def values(
        self, series_id: int, since: float | None = None, until: float | None = None
    ) -> ValueTable:
        return self.queries.values(series_id, since, until)

    def meter_values(
        self, meter: str, since: float | None = None, until: float | None = None
    ) -> dict[int, ValueTable]:
        return self.queries.meter_values(meter, since, until)

    def readings_after(self, positions: Mapping[str, tuple[int, int]]) -> dict[str, ReadingValues]:
        return self.queries.readings_after(positions)

    def latest(self, meters: Iterable[str] | None = None) -> ValueTable:
        return self.queries.latest(meters)

    def meter_log(
        self, meter: str, since: float | None = None, until: float | None = None
    ) -> MeterLog:
        return self.queries.meter_log(meter, since, until)

    def raw_telegrams(
        self, meter: str, since: float | None = None, until: float | None = None
    ) -> list[RawTelegram]:
        return self.queries.raw_telegrams(meter, since, until)

    def system_log(self, where: LogFilter = EVERYTHING, limit: int | None = None) -> list[LogEntry]:
        return syslog_table.query(self.env, where, limit)

    def export_system_log(self, out: TextIO, where: LogFilter = EVERYTHING) -> int:
        return syslog_table.export_csv(self.env, out, where)

    def stored_settings(self) -> Settings:
        """The settings on disk now (another process may have changed them)."""
        with self.env.read() as txn:
            return read_settings(txn, self.env)

    def records(self, table: str) -> dict[str, object]:
        with self.env.read() as txn:
            return records.read_records(txn, self.env, table)

    def record(self, table: str, name: str) -> object | None:
        with self.env.read() as txn:
            return records.read_record(txn, self.env, table, name)

    def problems(self) -> list[str]:
        """A full consistency check (slow on a big store: run it in a thread)."""
        return find_problems(self.env)

    def stats(self) -> StoreStats:
        env = self.env
        page = env.page_size
        with env.read() as txn:
            tables = {}
            for name in DB_NAMES:
                stat = txn.stat(getattr(env.db, name))
                pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
                tables[name] = TableStats(stat["entries"], pages * page)
            used = env.used_bytes(txn)
            readings = get_u64(txn, env.db.meta, COUNT_READINGS)
            values = get_u64(txn, env.db.meta, COUNT_VALUES)
        oldest, newest = time_bounds(env)
        return StoreStats(
            str(env.path),
            env.path.stat().st_size,
            env.map_size,
            used,
            tables["meters"].entries,
            tables["series"].entries,
            readings,
            values,
            tables["readings"].entries,
            tables["blocks"].entries,
            tables["raw"].entries,
            tables["syslog"].entries,
            syslog_table.stored_bytes(env),
            oldest,
            newest,
            tables,
        )
