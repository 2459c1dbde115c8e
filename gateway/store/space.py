"""Room on the store's file system: checked before LMDB maps anything, and asked before the map
grows.

LMDB writes its lock file (and, with a writable map, its data file) through shared memory: on a
full file system the first touch of a page that has no block behind it kills the process with
SIGBUS instead of returning an error. So a store is opened only when the file system has room
for its lock file and first pages, and a full disk is reported as ``DiskFull``, in words.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from mbusgw.gateway.errors import DiskFull, StoreError

KiB = 1 << 10
MiB = 1 << 20
# a lock file for 126 readers is 8 KiB; a new store writes its 14 tables and first log entries
LOCK_ROOM = 64 * KiB
# below this a writable store would fail its first commits at once
WRITE_ROOM = 1 * MiB
_FULL = {os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT)}


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path`` (or its
    nearest existing parent: the store's directory may not exist yet)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def describe_room(free: int) -> str:
    return f"{free // KiB} KiB free" if free < 10 * MiB else f"{free // MiB} MiB free"


def check_room_to_open(store_file: Path, *, readonly: bool) -> None:
    """Raise ``DiskFull`` unless opening ``store_file`` can be done without running out of
    space (a read-only open only needs room when it has to create the lock file)."""
    needed = 0 if readonly else WRITE_ROOM
    if not Path(f"{store_file}-lock").exists():
        needed += LOCK_ROOM
    if not needed:
        return
    free = free_bytes(store_file.parent)
    if free < needed:
        raise DiskFull(
            f"disk full: {describe_room(free)} on the file system of {store_file.parent}, "
            f"the store needs at least {needed // KiB} KiB to open"
        )


def disk_room_for_map(store_file: Path) -> int:
    """The largest map the file system can back now: the file as it is plus the free space."""
    try:
        size = store_file.stat().st_size
    except FileNotFoundError:
        size = 0
    return size + free_bytes(store_file.parent)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (an OSError or an LMDB error) says the file system is full."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return any(text in str(error) for text in _FULL)


def commit_failure(error: BaseException, store_file: Path) -> StoreError:
    """What a failed commit is: ``DiskFull`` when the disk is full (LMDB reports a write cut
    short by a full disk as an I/O error, so little room left counts too), else a
    ``StoreError`` naming the cause."""
    free = free_bytes(store_file.parent)
    if is_disk_full(error) or free < WRITE_ROOM:
        return DiskFull(f"disk full: nothing could be stored ({describe_room(free)})")
    return StoreError(f"the store could not commit: {error}")
