"""Store format migrations: a store written by an older release is brought up to date in place.

``StoreEnv`` reads the format number in ``meta``. An older store opened for writing is first
copied next to itself (``store.mdb.format-N.bak``, its secrets sealed like the store's), then
every step from its format on runs in one write transaction with the new number: all or
nothing. A store of a newer format is refused. A backup of an older format is migrated the same
way when it is restored (``gateway/store/backup.py``).

Adding a step is one function: it takes the write transaction and the open store (its tables as
``db``, the ``sealer`` of its secrets), turns format ``len(STEPS)`` into the next, and is
appended to ``STEPS``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import lmdb

from mbusgw.core import MBusError, decode
from mbusgw.gateway.store.model import HeaderIdentity
from mbusgw.gateway.store.raw import decode_frames_v1, encode_raw

if TYPE_CHECKING:
    from mbusgw.gateway.store.env import Databases
    from mbusgw.gateway.store.sealing import Sealer


class Opened(Protocol):
    """A store file open for writing: its tables and the sealer of its secrets."""

    @property
    def db(self) -> Databases: ...

    @property
    def sealer(self) -> Sealer: ...


Step = Callable[[lmdb.Transaction, Opened], None]


def raw_header_identity(txn: lmdb.Transaction, store: Opened) -> None:
    """Format 1 → 2: each raw telegram record gets the identity its first frame's header
    tells (wired frames; a wireless frame, which needs its link layer, gets none: as before,
    its readers fall back to the installed meter)."""
    cursor = txn.cursor(db=store.db.raw)
    more = cursor.first()
    while more:
        received_at, frames = decode_frames_v1(cursor.value())
        header = None
        if frames:
            with contextlib.suppress(MBusError):
                header = HeaderIdentity.of(decode(frames[0]).header)
        cursor.put(cursor.key(), encode_raw(received_at, frames, header))
        more = cursor.next()


def sealed_secrets(txn: lmdb.Transaction, store: Opened) -> None:
    """Format 2 → 3: every secret stored in clear is sealed under the key file beside the
    store; from format 3 on none is stored in clear (``gateway/store/clear_secrets.py``)."""
    # imported here: that module needs the environment's, which imports this one
    from mbusgw.gateway.store.clear_secrets import seal_clear_secrets

    seal_clear_secrets(txn, store)


STEPS: tuple[Step, ...] = (raw_header_identity, sealed_secrets)  # STEPS[i]: format i+1 → i+2
SCHEMA_VERSION = len(STEPS) + 1


def migrate(txn: lmdb.Transaction, store: Opened, found: int) -> None:
    """Run the steps from format ``found`` to ``SCHEMA_VERSION`` in ``txn``."""
    for step in STEPS[found - 1 :]:
        step(txn, store)
