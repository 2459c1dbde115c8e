"""Store format migrations: a store written by an older release is brought up to date in place.

``StoreEnv`` reads the format number in ``meta``. An older store opened for writing is first
copied next to itself (``store.mdb.format-N.bak``), then every step from its format on runs in
one write transaction with the new number: all or nothing. A store of a newer format is refused.

Adding a step is one function: it takes the write transaction and the tables by name, turns
format ``len(STEPS)`` into the next, and is appended to ``STEPS``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import lmdb

from mbusgw.core import MBusError, decode
from mbusgw.gateway.store.model import HeaderIdentity
from mbusgw.gateway.store.raw import decode_frames_v1, encode_raw

Tables = Mapping[str, lmdb._Database]
Step = Callable[[lmdb.Transaction, Tables], None]


def raw_header_identity(txn: lmdb.Transaction, db: Tables) -> None:
    """Format 1 → 2: each raw telegram record gets the identity its first frame's header
    tells (wired frames; a wireless frame, which needs its link layer, gets none: as before,
    its readers fall back to the installed meter)."""
    cursor = txn.cursor(db=db["raw"])
    more = cursor.first()
    while more:
        received_at, frames = decode_frames_v1(cursor.value())
        header = None
        if frames:
            with contextlib.suppress(MBusError):
                header = HeaderIdentity.of(decode(frames[0]).header)
        cursor.put(cursor.key(), encode_raw(received_at, frames, header))
        more = cursor.next()


STEPS: tuple[Step, ...] = (raw_header_identity,)  # STEPS[i]: format i + 1 → i + 2
SCHEMA_VERSION = len(STEPS) + 1


def migrate(txn: lmdb.Transaction, db: Tables, found: int) -> None:
    """Run the steps from format ``found`` to ``SCHEMA_VERSION`` in ``txn``."""
    for step in STEPS[found - 1 :]:
        step(txn, db)
