"""What a write operation gets: the open transaction and the batch's pending state."""

from __future__ import annotations

from dataclasses import dataclass, field

import lmdb

from mbusgw.gateway.settings import Settings
from mbusgw.gateway.store.catalog import CatalogBatch
from mbusgw.gateway.store.env import Databases, StoreEnv
from mbusgw.gateway.store.syslog import LogEntry


@dataclass(slots=True)
class WriteContext:
    """One write transaction. Operations run inside it and must not keep it (no awaits)."""

    env: StoreEnv
    txn: lmdb.Transaction
    catalog: CatalogBatch
    settings: Settings
    now: float
    # last status byte per meter id: committed, and as this batch changes it (published after
    # the commit, for the "on change" meter log mode)
    committed_status_bytes: dict[int, int] = field(default_factory=dict)
    status_bytes: dict[int, int] = field(default_factory=dict)
    # system log entries the operation wants written (pruning, growth): in the same batch
    events: list[LogEntry] = field(default_factory=list)
    settings_changed: bool = False

    @property
    def db(self) -> Databases:
        return self.env.db
