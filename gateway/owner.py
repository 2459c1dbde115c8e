"""One writer of a data directory: a running gateway owns its meter list (it works from the
list in memory), so nothing else may change it behind its back.

Whoever changes a data directory (``mbusgw run``, ``mbusgw search``, ``mbusgw meters
install|remove``) holds an exclusive lock on ``owner.lock`` in it while it does, and writes who
it is there (process id, what it is, where its web service listens). The lock is the
operating system's (``flock``): it ends with the process however that ends, so a file left by
a crashed gateway does not lock anyone out. Another would-be writer is refused with a message
naming the owner.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

LOCK_NAME = "owner.lock"


class DataDirBusy(RuntimeError):
    """Another process owns the data directory; ``owner`` says who (as it wrote it)."""

    def __init__(self, data_dir: Path, owner: dict[str, object]) -> None:
        self.owner = owner
        what = owner.get("what") or "another process"
        pid = owner.get("pid")
        web = owner.get("web")
        detail = ", ".join(
            part for part in (f"pid {pid}" if pid else "", f"web at {web}" if web else "") if part
        )
        super().__init__(f"{what} is running on {data_dir}" + (f" ({detail})" if detail else ""))


def _read_owner(handle: int) -> dict[str, object]:
    os.lseek(handle, 0, os.SEEK_SET)
    text = os.read(handle, 4096).decode("utf-8", "replace")
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


@contextmanager
def own(data_dir: Path, what: str, web: str | None = None) -> Iterator[None]:
    """Hold ``data_dir`` as its one writer for the ``with`` block; DataDirBusy when another
    process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(data_dir, _read_owner(handle)) from None
        record = {"pid": os.getpid(), "what": what, "web": web}
        # on a full disk the record may not fit: the lock holds all the same, and the store
        # says what is wrong when it opens
        with suppress(OSError):
            os.ftruncate(handle, 0)
            os.pwrite(handle, json.dumps(record).encode(), 0)
        try:
            yield
        finally:
            with suppress(OSError):
                os.ftruncate(handle, 0)  # the lock itself goes with the descriptor
    finally:
        os.close(handle)
