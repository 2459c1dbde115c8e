"""The LMDB environment: one file, its named databases, the map size and the reader gate.

LMDB may only change its map size while no transaction of this process is open, so every
transaction enters a ``_Gate`` shared, and growing the map takes it exclusively for the
microseconds the call needs. Readers never wait for the writer otherwise.

A store in its data directory is the gateway's alone: the directory is 0700, the store and its
lock file 0600, and the secrets in it are sealed under the key file beside it
(``gateway/store/sealing.py``). A scratch copy (a backup being written or restored) is given the
sealer its contents are sealed with, and leaves its directory's mode alone.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lmdb

from mbusgw.gateway.errors import StoreError
from mbusgw.gateway.store.sealing import FILE_MODE, Sealer, private_dir, private_file
from mbusgw.gateway.store.space import check_room_to_open

FILE_NAME = "store.mdb"
MiB = 1 << 20
GiB = 1 << 30
DEFAULT_MAP_SIZE = 64 * MiB

DB_NAMES = (
    "meta",  # schema version, id and sequence counters, value/reading counts
    "meters",  # meter id (u32) -> JSON {name, created}
    "meter_index",  # meter name (UTF-8) -> meter id
    "series",  # series id (u32) -> JSON {meter, signature, quantity, unit, description}
    "series_index",  # meter id + signature -> series id
    "readings",  # (slot, meter, seq) -> reading row: meter log entry + values, until compacted
    "blocks",  # (day, meter) -> compacted block: a meter's readings of one UTC day
    "raw",  # (slot, meter, seq) -> raw telegram frames of that reading
    "syslog",  # (time µs, seq) -> level, origin, text
    "settings",  # name -> JSON value
    "users",  # user name -> JSON record
    "keys",  # key id -> JSON record (AES keys: secrets)
    "cursors",  # push report id -> JSON delivery cursor
    "installation",  # meter key -> JSON of the installed meter and its per-meter settings
)

_U64 = struct.Struct("<Q")
# store files open in this process (LMDB's own locks do not see our own process)
OPEN_FILES: set[Path] = set()


@dataclass(frozen=True, slots=True)
class Databases:
    meta: lmdb._Database
    meters: lmdb._Database
    meter_index: lmdb._Database
    series: lmdb._Database
    series_index: lmdb._Database
    readings: lmdb._Database
    blocks: lmdb._Database
    raw: lmdb._Database
    syslog: lmdb._Database
    settings: lmdb._Database
    users: lmdb._Database
    keys: lmdb._Database
    cursors: lmdb._Database
    installation: lmdb._Database

    def all(self) -> dict[str, lmdb._Database]:
        return {name: getattr(self, name) for name in DB_NAMES}


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A store file's tables and the sealer of its secrets, where no ``StoreEnv`` is open (the
    copy a migration keeps): what a migration step needs, like ``StoreEnv``."""

    db: Databases
    sealer: Sealer


class _Gate:
    """Shared for transactions, exclusive for map resizes (never nested in one thread)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holders = 0
        self._exclusive = False

    def acquire_shared(self) -> None:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._holders += 1

    def release_shared(self) -> None:
        with self._cond:
            self._holders -= 1
            if not self._holders:
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._holders:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class StoreEnv:
    """An open store file. ``read()`` and ``write()`` hand out short transactions."""

    def __init__(
        self,
        path: Path,
        *,
        readonly: bool = False,
        map_size: int = DEFAULT_MAP_SIZE,
        sealer: Sealer | None = None,
        schema: int,
    ) -> None:
        """``schema``: the store format this release writes. A store of an older format opens
        unchanged, with ``found_format`` telling (``migrations.open_env`` migrates it); one of
        a newer format is refused."""
        self.path = Path(path)
        self.readonly = readonly
        self.schema = schema
        self.found_format = schema
        if readonly and not self.path.is_file():
            raise StoreError(f"no store at {self.path}")
        check_room_to_open(self.path, readonly=readonly)  # LMDB dies of SIGBUS on a full disk
        if not readonly and sealer is None:
            private_dir(self.path.parent)
        elif not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sealer = sealer or Sealer.beside(self.path, create=not readonly)
        try:
            self.env = lmdb.open(
                str(self.path),
                subdir=False,
                map_size=map_size,
                max_dbs=len(DB_NAMES) + 2,
                readonly=readonly,
                mode=FILE_MODE,  # the store and its lock file, when LMDB creates them
                sync=True,  # a commit returns after the data and meta pages reached the disk
                metasync=True,
                writemap=False,  # a wild write or a full disk must not corrupt the file
                map_async=False,
                readahead=False,  # random reads over a large file: do not thrash a small RAM
                meminit=False,
                max_readers=126,
            )
        except lmdb.Error as error:
            raise StoreError(f"cannot open the store {self.path}: {error}") from error
        if not readonly:
            for made_earlier in (self.path, Path(f"{self.path}-lock")):
                private_file(made_earlier)
        self._gate = _Gate()
        self.migrated: tuple[int, Path | None] | None = None  # (old format, its copy)
        try:
            self.db = self._open_databases()
        except BaseException:
            self.env.close()
            raise
        OPEN_FILES.add(self.path.resolve())

    def _open_databases(self) -> Databases:
        handles = {}
        try:
            if self.readonly:
                # handles opened in an explicit read transaction die with it: let py-lmdb
                # open each in a transaction of its own
                for name in DB_NAMES:
                    handles[name] = self.env.open_db(name.encode(), create=False)
            else:
                with self.env.begin(write=True) as txn:
                    for name in DB_NAMES:
                        handles[name] = self.env.open_db(name.encode(), txn=txn)
        except lmdb.NotFoundError as error:
            raise StoreError(f"{self.path} is not an mbusgw store (missing tables)") from error
        except lmdb.Error as error:
            raise StoreError(f"cannot open the store {self.path}: {error}") from error
        db = Databases(**handles)
        with self.read() as txn:
            version = txn.get(b"schema", db=db.meta)
        if version is None and not self.readonly:
            with self.write() as txn:
                txn.put(b"schema", struct.pack("<I", self.schema), db=db.meta)
            version = struct.pack("<I", self.schema)
        if version is None or len(version) != 4:
            raise StoreError(f"{self.path} is not an mbusgw store (no schema version)")
        found = struct.unpack("<I", version)[0]
        if found > self.schema or found < 1:
            raise StoreError(
                f"{self.path} has store format {found}, written by a newer release; this "
                f"gateway reads formats up to {self.schema}: update it or restore a backup"
            )
        self.found_format = found
        return db

    # -- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A short read-only snapshot (keep it well under a second: it pins old pages)."""
        txn = self._begin(write=False)
        try:
            yield txn
        finally:
            txn.abort()
            self._gate.release_shared()

    @contextlib.contextmanager
    def write(self) -> Iterator[lmdb.Transaction]:
        """A write transaction committed durably on success, aborted on any exception."""
        txn = self._begin(write=True)
        try:
            yield txn
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        finally:
            self._gate.release_shared()

    def _begin(self, *, write: bool) -> lmdb.Transaction:
        """Begin with the gate held shared; adopt a map grown by another process first."""
        while True:
            self._gate.acquire_shared()
            try:
                return self.env.begin(write=write, buffers=False)
            except lmdb.MapResizedError:
                self._gate.release_shared()
                with self._gate.exclusive():
                    self.env.set_mapsize(0)
            except BaseException:
                self._gate.release_shared()
                raise

    # -- size --------------------------------------------------------------------------------

    @property
    def map_size(self) -> int:
        return self.env.info()["map_size"]

    @property
    def page_size(self) -> int:
        return self.env.stat()["psize"]

    def grow(self, new_size: int) -> None:
        """Enlarge the map; waits until no transaction of this process is open."""
        with self._gate.exclusive():
            self.env.set_mapsize(new_size)

    def used_bytes(self, txn: lmdb.Transaction) -> int:
        """Bytes in pages that hold data (the file may be larger: free pages are reused)."""
        page = self.page_size
        total = 2 * page  # the two meta pages
        main = txn.stat()
        total += (main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]) * page
        for handle in self.db.all().values():
            stat = txn.stat(handle)
            total += (stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]) * page
        return total

    def copy_to_fd(self, fd: int) -> None:
        """A consistent, compacted copy of the whole store (a long read: run it in a thread)."""
        self._gate.acquire_shared()
        try:
            self.env.copyfd(fd, compact=True)
        finally:
            self._gate.release_shared()

    def close(self) -> None:
        OPEN_FILES.discard(self.path.resolve())
        self.env.close()


def write_new(path: Path, fill: Callable[[int], None]) -> None:
    """A new private file at ``path`` written by ``fill(fd)`` and flushed to the disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        fill(fd)
        os.fsync(fd)
    finally:
        os.close(fd)


def get_u64(txn: lmdb.Transaction, db: lmdb._Database, key: bytes, default: int = 0) -> int:
    raw = txn.get(key, db=db)
    return default if raw is None else _U64.unpack(raw)[0]


def put_u64(txn: lmdb.Transaction, db: lmdb._Database, key: bytes, value: int) -> None:
    txn.put(key, _U64.pack(value), db=db)


COUNT_READINGS = b"count_readings"
COUNT_VALUES = b"count_values"


def add_counts(txn: lmdb.Transaction, db: Databases, readings: int, values: int) -> None:
    """Keep the stored reading and value totals (for statistics) in step with the data."""
    for key, delta in ((COUNT_READINGS, readings), (COUNT_VALUES, values)):
        if delta:
            put_u64(txn, db.meta, key, max(0, get_u64(txn, db.meta, key) + delta))


def delete_front(
    cursor: lmdb.Cursor, keep_going: Callable[[bytes, bytes], bool], limit: int
) -> int:
    """Delete from the first entry on while ``keep_going(key, value)``, at most ``limit``."""
    removed = 0
    if not cursor.first():
        return 0
    while removed < limit:
        key = cursor.key()
        if not key or not keep_going(key, cursor.value()):  # an empty key: past the end
            break
        cursor.delete()
        removed += 1
    return removed
