"""Backups: a consistent, compacted copy of the whole store, taken while the gateway runs.

A backup file is one header block and the store file::

    bytes 0..4095   b"MBUSGW-BACKUP\\n", a JSON manifest, a newline, zero padding
    bytes 4096..    the store, copied by LMDB with compaction (free pages left out)

The manifest holds the format version, the store schema, the creation time, the data size and
its SHA-256, and the counts of meters, series, readings and values. The copy is written straight
into the destination's temporary file (no second copy on the card) and renamed into place.

``restore_backup`` checks everything before touching the live store: header, version, size
(truncation), checksum, then it opens the extracted copy as a store and reads its tables. Only
then does it rename the copy over the store file, an atomic step; any failure before leaves
the store as it was. The store must not be open elsewhere (the gateway stopped): LMDB's lock
file tells.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mbusgw.gateway.errors import BackupError, StoreError, StoreLocked
from mbusgw.gateway.store.check import find_problems
from mbusgw.gateway.store.env import (
    COUNT_READINGS,
    COUNT_VALUES,
    OPEN_FILES,
    SCHEMA_VERSION,
    StoreEnv,
    get_u64,
)

MAGIC = b"MBUSGW-BACKUP\n"
FORMAT_VERSION = 1
HEADER_SIZE = 4096
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """What a backup holds (its manifest)."""

    created: str
    schema: int
    data_bytes: int
    sha256: str
    meters: int
    series: int
    readings: int
    values: int

    def manifest(self) -> bytes:
        record = {"format": FORMAT_VERSION, **{k: getattr(self, k) for k in self.__slots__}}
        return json.dumps(record, sort_keys=True).encode()


def _sha256(fd: int, offset: int, size: int) -> str:
    digest = hashlib.sha256()
    done = 0
    while done < size:
        chunk = os.pread(fd, min(_CHUNK, size - done), offset + done)
        if not chunk:
            break
        digest.update(chunk)
        done += len(chunk)
    return digest.hexdigest()


def _counts(env: StoreEnv) -> tuple[int, int, int, int]:
    with env.read() as txn:
        return (
            txn.stat(env.db.meters)["entries"],
            txn.stat(env.db.series)["entries"],
            get_u64(txn, env.db.meta, COUNT_READINGS),
            get_u64(txn, env.db.meta, COUNT_VALUES),
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_backup(env: StoreEnv, destination: str | os.PathLike[str], created: float) -> BackupInfo:
    """Write a backup of the open store ``env`` to ``destination`` (replaced atomically).

    A long read: run it in a worker thread inside the gateway. ``created`` is the wall time.
    """
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".part")
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.lseek(fd, HEADER_SIZE, os.SEEK_SET)
        env.copy_to_fd(fd)
        data_bytes = os.fstat(fd).st_size - HEADER_SIZE
        digest = _sha256(fd, HEADER_SIZE, data_bytes)
        copy = _open_copy_in(fd, partial, data_bytes)
        info = BackupInfo(
            dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="seconds"),
            SCHEMA_VERSION,
            data_bytes,
            digest,
            *copy,
        )
        header = MAGIC + info.manifest() + b"\n"
        if len(header) > HEADER_SIZE:
            raise BackupError("backup manifest does not fit its header")
        os.pwrite(fd, header.ljust(HEADER_SIZE, b"\0"), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        partial.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(partial, destination)
    _fsync_dir(destination.parent)
    return info


def _open_copy_in(fd: int, partial: Path, data_bytes: int) -> tuple[int, int, int, int]:
    """Counts read from the copy itself (so the manifest describes exactly what was copied)."""
    with _extracted(fd, HEADER_SIZE, data_bytes, partial.with_name(partial.name + ".mdb")) as path:
        env = StoreEnv(path, readonly=True)
        try:
            return _counts(env)
        finally:
            env.close()


@contextlib.contextmanager
def _extracted(fd: int, offset: int, size: int, path: Path) -> Iterator[Path]:
    """The data part of a backup as a store file of its own, removed afterwards."""
    _copy_range(fd, offset, size, path)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        Path(str(path) + "-lock").unlink(missing_ok=True)


def _copy_range(fd: int, offset: int, size: int, path: Path) -> None:
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        done = 0
        while done < size:
            chunk = os.pread(fd, min(_CHUNK, size - done), offset + done)
            if not chunk:
                raise BackupError("backup data ends early")
            os.write(out, chunk)
            done += len(chunk)
        os.fsync(out)
    finally:
        os.close(out)


def read_backup_info(path: str | os.PathLike[str]) -> BackupInfo:
    """Parse and check a backup's header and size (not its checksum: see ``verify_backup``)."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            header = file.read(HEADER_SIZE)
            size = os.fstat(file.fileno()).st_size
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from error
    if not header.startswith(MAGIC):
        raise BackupError(f"{path} is not an mbusgw backup")
    if len(header) < HEADER_SIZE:
        raise BackupError(f"{path} is truncated (no complete header)")
    line = header[len(MAGIC) :].split(b"\n", 1)[0]
    try:
        record = json.loads(line)
        if record.pop("format") != FORMAT_VERSION:
            raise BackupError(
                f"{path} is backup format {record.get('format')}, not {FORMAT_VERSION}"
            )
        info = BackupInfo(**record)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise BackupError(f"{path} has a damaged manifest: {error}") from error
    if info.schema != SCHEMA_VERSION:
        raise BackupError(
            f"{path} holds store format {info.schema}; this gateway reads {SCHEMA_VERSION}"
        )
    if size != HEADER_SIZE + info.data_bytes:
        raise BackupError(
            f"{path} is {size} bytes, its manifest says {HEADER_SIZE + info.data_bytes}: "
            "truncated or damaged"
        )
    return info


@contextlib.contextmanager
def exclusive_store(store_file: Path) -> Iterator[None]:
    """Hold the store's LMDB lock file exclusively (no process may have the store open)."""
    if store_file.resolve() in OPEN_FILES:
        raise StoreLocked(f"{store_file} is open in this process")
    lock_path = Path(str(store_file) + "-lock")
    if not lock_path.exists():
        yield
        return
    fd = os.open(lock_path, os.O_RDWR)
    try:
        try:
            # every process with the environment open holds a shared lock on byte 0
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except OSError:
            raise StoreLocked(f"{store_file} is in use (stop the gateway first)") from None
        yield
    finally:
        os.close(fd)


def restore_backup(
    backup: str | os.PathLike[str], store_file: str | os.PathLike[str], *, full_check: bool = False
) -> BackupInfo:
    """Replace the store at ``store_file`` by the backup, after checking the backup completely.

    ``full_check`` also decodes every record of the restored store first (slow on a big store).
    On any error nothing is changed.
    """
    backup, store_file = Path(backup), Path(store_file)
    info = read_backup_info(backup)
    store_file.parent.mkdir(parents=True, exist_ok=True)
    staged = store_file.with_name(store_file.name + ".restore")
    with exclusive_store(store_file):
        with open(backup, "rb") as file:
            fd = file.fileno()
            if _sha256(fd, HEADER_SIZE, info.data_bytes) != info.sha256:
                raise BackupError(f"{backup} fails its checksum: the file is damaged")
            _copy_range(fd, HEADER_SIZE, info.data_bytes, staged)
        try:
            _test_open(staged, info, full_check)
            os.replace(staged, store_file)
            _fsync_dir(store_file.parent)
        finally:
            staged.unlink(missing_ok=True)
            Path(str(staged) + "-lock").unlink(missing_ok=True)
    return info


def _test_open(path: Path, info: BackupInfo, full_check: bool) -> None:
    try:
        env = StoreEnv(path, readonly=True)
    except StoreError as error:
        raise BackupError(f"the backup does not open as a store: {error}") from error
    try:
        counts = _counts(env)
        if counts != (info.meters, info.series, info.readings, info.values):
            raise BackupError("the backup's contents do not match its manifest")
        if full_check:
            problems = find_problems(env)
            if problems:
                raise BackupError("the backup fails the store check: " + "; ".join(problems[:5]))
    finally:
        env.close()
