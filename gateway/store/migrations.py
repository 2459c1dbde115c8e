"""Store format migrations: a store written by an older release is brought up to date in place.

``open_env`` opens every store: ``StoreEnv`` reads the format number in ``meta`` (and refuses
a newer one); an older store opened for writing is first copied next to itself
(``store.mdb.format-N.bak``, its secrets sealed like the store's), then every step from its
format on runs in one write transaction with the new number: all or nothing; opened read-only,
it is refused. A backup of an older format is migrated the same way
when it is restored (``gateway/store/backup.py``).

Adding a step is one function: it takes the write transaction and the open store (its tables as
``db``, the ``sealer`` of its secrets), turns format ``len(STEPS)`` into the next, and is
appended to ``STEPS``.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from functools import partial
from pathlib import Path

import lmdb

from mbusgw.core import MBusError, decode
from mbusgw.gateway.errors import StoreError
from mbusgw.gateway.store.clear_secrets import seal_clear_secrets
from mbusgw.gateway.store.env import (
    DB_NAMES,
    DEFAULT_MAP_SIZE,
    Databases,
    OpenedFile,
    StoreEnv,
    write_new,
)
from mbusgw.gateway.store.model import HEADER_FIELDS, HeaderIdentity
from mbusgw.gateway.store.raw import encode_identity, first_frame_v1, with_identity_v1
from mbusgw.gateway.store.sealing import Sealer

MAX_MIGRATION_GROWTH = 6  # doublings of the map a migration may need

Opened = StoreEnv | OpenedFile  # what a step works on: its tables (db) and sealer
Step = Callable[[lmdb.Transaction, Opened], None]


def raw_header_identity(txn: lmdb.Transaction, store: Opened) -> None:
    """Format 1 → 2: each raw telegram record gets the identity its first frame's header
    tells (wired frames; a wireless frame, which needs its link layer, gets none: as before,
    its readers fall back to the installed meter)."""
    none = encode_identity(None)
    blocks: dict[tuple, bytes] = {}  # identity blocks met so far: a year repeats them
    cursor = txn.cursor(db=store.db.raw)
    more = cursor.first()
    while more:
        value = cursor.value()
        block = none
        frame = first_frame_v1(value)
        if frame:
            with contextlib.suppress(MBusError):
                header = decode(frame).header
                fields = tuple(getattr(header, name) for name in HEADER_FIELDS)
                block = blocks.get(fields) or blocks.setdefault(
                    fields, encode_identity(HeaderIdentity(*fields))
                )
                if len(blocks) > 100_000:  # bounded memory on a small box
                    blocks.clear()
        cursor.put(cursor.key(), with_identity_v1(value, block))
        more = cursor.next()


def sealed_secrets(txn: lmdb.Transaction, store: Opened) -> None:
    """Format 2 → 3: every secret stored in clear is sealed under the key file beside the
    store; from format 3 on none is stored in clear (``gateway/store/clear_secrets.py``)."""
    seal_clear_secrets(txn, store)


STEPS: tuple[Step, ...] = (raw_header_identity, sealed_secrets)  # STEPS[i]: format i+1 → i+2
SCHEMA_VERSION = len(STEPS) + 1


def migrate(txn: lmdb.Transaction, store: Opened, found: int) -> None:
    """Run the steps from format ``found`` to ``SCHEMA_VERSION`` in ``txn``."""
    for step in STEPS[found - 1 :]:
        step(txn, store)


def open_env(
    path: Path,
    *,
    readonly: bool = False,
    map_size: int = DEFAULT_MAP_SIZE,
    sealer: Sealer | None = None,
    keep_old_format: bool = True,
) -> StoreEnv:
    """Open the store file at ``path``, migrated to ``SCHEMA_VERSION`` if it is older.

    ``keep_old_format=False``: no copy of the old store is kept (for a file that is itself a
    copy: a backup being restored)."""
    env = StoreEnv(path, readonly=readonly, map_size=map_size, sealer=sealer, schema=SCHEMA_VERSION)
    try:
        found = env.found_format
        if found < SCHEMA_VERSION:
            if readonly:
                raise StoreError(
                    f"{env.path} has store format {found}; start the gateway once (it opens "
                    f"the store for writing) to migrate it to format {SCHEMA_VERSION}"
                )
            copy = _keep_copy(env, found) if keep_old_format else None
            _migrate(env, found)
            env.migrated = (found, copy)
    except BaseException:
        env.close()
        raise
    return env


def _migrate(env: StoreEnv, found: int) -> None:
    """Every step from ``found`` on, in one transaction with the new format number."""
    with env.read() as txn:
        # room for the steps up front (a full map would start them again): the raw telegrams
        # are rewritten, twice their pages at most with copy-on-write and splits
        raw = txn.stat(env.db.raw)
        rewritten = (raw["branch_pages"] + raw["leaf_pages"] + raw["overflow_pages"]) * 2
        needed = env.used_bytes(txn) + rewritten * env.page_size + DEFAULT_MAP_SIZE
    if env.map_size < needed:
        env.grow(needed)
    for _ in range(MAX_MIGRATION_GROWTH):
        try:
            with env.write() as txn:
                migrate(txn, env, found)
                txn.put(b"schema", struct.pack("<I", SCHEMA_VERSION), db=env.db.meta)
            return
        except lmdb.MapFullError:
            env.grow(env.map_size * 2)  # the copy-on-write pages of a large store
    raise StoreError(f"{env.path}: migrating to format {SCHEMA_VERSION} needs more space")


def _keep_copy(env: StoreEnv, found: int) -> Path:
    """Write the old store next to itself (``store.mdb.format-N.bak``) with its clear-text
    secrets sealed (the sealing step alone, under the store's key file): the copy holds nothing
    the store would not. The sealed scratch copy is copied once more, compacted, so that no
    free page of it keeps a secret in clear; the result is renamed into place once complete."""
    backup = env.path.with_name(f"{env.path.name}.format-{found}.bak")
    scratch = backup.with_name(backup.name + ".scratch")
    part = backup.with_name(backup.name + ".part")
    try:
        write_new(scratch, env.copy_to_fd)
        copy = lmdb.open(
            str(scratch),
            subdir=False,
            lock=False,  # nobody else knows the file
            max_dbs=len(DB_NAMES) + 2,
            map_size=env.map_size + DEFAULT_MAP_SIZE,  # the compacted copy plus room
        )
        try:
            with copy.begin(write=True) as txn:
                tables = {name: copy.open_db(name.encode(), txn=txn) for name in DB_NAMES}
                sealed_secrets(txn, OpenedFile(Databases(**tables), env.sealer))
            write_new(part, partial(copy.copyfd, compact=True))
        finally:
            copy.close()
        part.replace(backup)
    finally:
        scratch.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    return backup
