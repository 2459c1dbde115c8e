"""Backups: a consistent, compacted copy of the whole store, taken while the gateway runs.

A backup file is one header block and the store file::

    bytes 0..4095   b"MBUSGW-BACKUP\\n", a JSON manifest, a newline, zero padding
    bytes 4096..    the store, copied by LMDB with compaction (free pages left out)

The manifest holds the format version, the store schema, the creation time, the data size and
its SHA-256, the counts of meters, series, readings and values, and ``secrets``: null, or how
the secrets in the copy are sealed (scrypt parameters and a passphrase check value).

Secrets (``gateway/store/sealing.py``) travel only when asked for: by default the copy holds
none (a set password reads as unset, key records are left out); with a passphrase each is
sealed under a key derived from it instead of the store's key file. The store is copied
(compacted) to a scratch file beside the destination, its secrets are changed there, and that
copy is copied (compacted again) into the backup's temporary file, which is renamed into place.

``restore_backup`` checks everything before touching the live store: header, version, size
(truncation), checksum, the passphrase when the backup carries secrets; then it opens the
extracted copy as a store, seals its secrets under the data directory's key file, migrates it
when it is of an older store format (as starting the gateway would; a newer one is refused before
anything is written), and reads its tables. Only then does it rename the copy over the store
file, an atomic step; any failure before leaves the store as it was. The store must not be
open elsewhere (the gateway stopped): LMDB's lock file tells.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from mbusgw.gateway.errors import BackupError, StoreError, StoreLocked
from mbusgw.gateway.store.check import find_problems
from mbusgw.gateway.store.env import (
    COUNT_READINGS,
    COUNT_VALUES,
    OPEN_FILES,
    StoreEnv,
    get_u64,
    write_new,
)
from mbusgw.gateway.store.migrations import SCHEMA_VERSION, open_env
from mbusgw.gateway.store.records import RECORD_TABLES, table
from mbusgw.gateway.store.sealing import PassphraseSealer, Sealer, SealError, map_sealed

MAGIC = b"MBUSGW-BACKUP\n"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # format 1 has no ``secrets``: its store held them in clear
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
    secrets: dict[str, Any] | None = None  # how the carried secrets are sealed; None: none

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


def create_backup(
    env: StoreEnv,
    destination: str | os.PathLike[str],
    created: float,
    *,
    passphrase: str | None = None,
) -> BackupInfo:
    """Write a backup of the open store ``env`` to ``destination`` (replaced atomically): with
    ``passphrase``, carrying the secrets sealed under it; without, carrying none.

    A long read: run it in a worker thread inside the gateway. ``created`` is the wall time.
    """
    destination = Path(destination)
    part = destination.with_name(destination.name + ".part")
    carrier = PassphraseSealer(passphrase) if passphrase is not None else None

    # the copy's secrets under the store's key; a store opened read-only without its key file
    # (moved without it) has none to give, and its secrets read as unset: a key for the copy alone
    working = env.sealer if env.sealer.has_key else Sealer.scratch()

    def carried(sealed: str, name: str) -> str | None:
        # a secret that does not open here (the store moved without its key file) is unset
        secret = working.readable(sealed, name) if carrier is not None else None
        return None if secret is None or carrier is None else carrier.seal(secret, name)

    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        scratch = destination.with_name(destination.name + ".part.mdb")
        with _scratch_file(scratch, env.copy_to_fd):
            copy = open_env(scratch, sealer=working)
            try:
                _reseal(copy, carried)
                counts = _counts(copy)
                os.lseek(fd, HEADER_SIZE, os.SEEK_SET)
                copy.copy_to_fd(fd)
            finally:
                copy.close()
        data_bytes = os.fstat(fd).st_size - HEADER_SIZE
        info = BackupInfo(
            dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="seconds"),
            SCHEMA_VERSION,
            data_bytes,
            _sha256(fd, HEADER_SIZE, data_bytes),
            *counts,
            secrets=carrier.params if carrier is not None else None,
        )
        header = MAGIC + info.manifest() + b"\n"
        if len(header) > HEADER_SIZE:
            raise BackupError("backup manifest does not fit its header")
        os.pwrite(fd, header.ljust(HEADER_SIZE, b"\0"), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        part.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(part, destination)
    _fsync_dir(destination.parent)
    return info


@contextlib.contextmanager
def _scratch_file(path: Path, fill: Callable[[int], None]) -> Iterator[None]:
    """A store file at ``path`` (0600) written by ``fill(fd)``; afterwards removed with its
    lock file unless it was renamed away."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            fill(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)
        Path(str(path) + "-lock").unlink(missing_ok=True)


def _reseal(env: StoreEnv, change: Callable[[str, str], str | None]) -> None:
    """Pass every sealed secret of ``env`` through ``change(sealed, table)``, in one
    transaction. None drops the secret: a setting becomes unset, a record goes (a key record
    without its key is of no use)."""
    with env.write() as txn:
        for name in ("settings", *RECORD_TABLES):
            db = env.db.settings if name == "settings" else table(env.db, name)
            for key, raw in list(txn.cursor(db=db)):
                found: list[str | None] = []

                def one(sealed: str, name: str = name, found: list = found) -> str:
                    found.append(change(sealed, name))
                    return found[-1] or ""

                value = map_sealed(json.loads(raw), one)
                if not found:
                    continue
                if None in found and name != "settings":
                    txn.delete(key, db=db)
                else:
                    txn.put(key, json.dumps(value, allow_nan=False).encode(), db=db)


def _copy_range(fd: int, offset: int, size: int, out: int) -> None:
    done = 0
    while done < size:
        chunk = os.pread(fd, min(_CHUNK, size - done), offset + done)
        if not chunk:
            raise BackupError("backup data ends early")
        os.write(out, chunk)
        done += len(chunk)


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
        version = record.pop("format")
        if version not in READABLE_FORMATS:
            raise BackupError(f"{path} is backup format {version}, not {FORMAT_VERSION}")
        info = BackupInfo(**record)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise BackupError(f"{path} has a damaged manifest: {error}") from error
    if not 1 <= info.schema <= SCHEMA_VERSION:
        raise BackupError(
            f"{path} holds store format {info.schema}, written by a newer release; this gateway "
            f"restores formats up to {SCHEMA_VERSION}: update it first"
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
    backup: str | os.PathLike[str],
    store_file: str | os.PathLike[str],
    *,
    full_check: bool = False,
    passphrase: str | None = None,
) -> BackupInfo:
    """Replace the store at ``store_file`` by the backup, after checking the backup completely.

    A backup that carries secrets needs the ``passphrase`` they were sealed with; they are
    sealed anew under the data directory's key file. ``full_check`` also decodes every record
    of the restored store first (slow on a big store). On any error nothing is changed.
    """
    backup, store_file = Path(backup), Path(store_file)
    info = read_backup_info(backup)
    carrier = backup_sealer(info, passphrase)
    store_file.parent.mkdir(parents=True, exist_ok=True)
    staged = store_file.with_name(store_file.name + ".restore")
    with exclusive_store(store_file), open(backup, "rb") as file:
        fd = file.fileno()
        if _sha256(fd, HEADER_SIZE, info.data_bytes) != info.sha256:
            raise BackupError(f"{backup} fails its checksum: the file is damaged")
        with _scratch_file(staged, partial(_copy_range, fd, HEADER_SIZE, info.data_bytes)):
            if carrier is not None:
                _reseal_for(staged, carrier, Sealer.beside(store_file, create=True))
            if info.schema < SCHEMA_VERSION:
                _migrate_staged(staged, Sealer.beside(store_file, create=True))
            _test_open(staged, info, full_check)
            os.replace(staged, store_file)
            _fsync_dir(store_file.parent)
    return info


def _reseal_for(path: Path, carrier: Sealer, kept: Sealer) -> None:
    """The secrets of the store file at ``path``, sealed by ``carrier``, sealed by ``kept``."""
    try:
        copy = open_env(path, sealer=carrier, keep_old_format=False)
    except StoreError as error:
        raise BackupError(f"the backup does not open as a store: {error}") from error
    try:
        _reseal(copy, lambda text, name: kept.seal(carrier.open(text, name), name))
    except SealError as error:
        raise BackupError(f"the backup's secrets are damaged: {error}") from error
    finally:
        copy.close()


def _migrate_staged(path: Path, kept: Sealer) -> None:
    """A backup of an older store format, brought to this one as a store opened here would be
    (its clear-text secrets sealed by ``kept``); the backup file itself is the old copy. The
    migrated copy is compacted once more, so that no free page keeps a secret in clear."""
    try:
        env = open_env(path, sealer=kept, keep_old_format=False)
    except StoreError as error:
        raise BackupError(f"the backup does not migrate to this store format: {error}") from error
    compacted = path.with_name(path.name + ".compacted")
    try:
        try:
            write_new(compacted, env.copy_to_fd)
        finally:
            env.close()
        os.replace(compacted, path)
    finally:
        compacted.unlink(missing_ok=True)


def backup_sealer(info: BackupInfo, passphrase: str | None) -> PassphraseSealer | None:
    """The sealer of a backup's secrets: None when it carries none; ``BackupError`` when it
    does and the passphrase is missing or wrong."""
    if info.secrets is None:
        return None
    if not passphrase:
        raise BackupError("this backup carries secrets sealed with a passphrase: give it")
    try:
        return PassphraseSealer.checked(passphrase, info.secrets)
    except SealError as error:
        raise BackupError(f"{error}; nothing was changed") from None


def _test_open(path: Path, info: BackupInfo, full_check: bool) -> None:
    try:
        env = open_env(path, readonly=True, sealer=Sealer(None, "no key"))
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
