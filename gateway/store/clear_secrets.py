"""Secrets a store holds in clear, from before sealing existed (store formats 1 and 2).

``seal_clear_secrets`` is the migration step to format 3 (``gateway/store/migrations.py``):
every clear-text secret (settings and records, see ``gateway/store/sealing.py``) is sealed under
the key file beside the store, in the migration's transaction. From format 3 on no secret is
stored in clear, so opening a store no longer looks for any. The same step seals the copy a
migration keeps of the old store (``store.mdb.format-N.bak``): that copy is no way around it.

``count_unreadable`` counts the sealed secrets that do not open with the key file (a store
moved without it), which read as unset.
"""

from __future__ import annotations

import json

import lmdb

from mbusgw.gateway.store.env import OpenedFile, StoreEnv
from mbusgw.gateway.store.records import table
from mbusgw.gateway.store.sealing import RECORD_SECRETS
from mbusgw.gateway.store.settings_table import (
    has_clear_secrets,
    read_settings,
    sealed_settings,
)


def seal_clear_secrets(txn: lmdb.Transaction, store: StoreEnv | OpenedFile) -> int:
    """Seal every secret stored in clear, in ``txn``. Returns how many records were rewritten."""
    rewritten = 0
    stored = {key.decode(): json.loads(raw) for key, raw in txn.cursor(db=store.db.settings)}
    sealed = sealed_settings(read_settings(txn, store), store)
    for name, value in sealed.items():
        if has_clear_secrets(stored.get(name), value):
            txn.put(name.encode(), json.dumps(value).encode(), db=store.db.settings)
            rewritten += 1
    for name in RECORD_SECRETS:
        db = table(store.db, name)
        for key, raw in list(txn.cursor(db=db)):
            record = json.loads(raw)
            record_sealed = store.sealer.seal_record(name, record)
            if record_sealed is not record:
                txn.put(key, json.dumps(record_sealed, allow_nan=False).encode(), db=db)
                rewritten += 1
    return rewritten


def count_unreadable(env: StoreEnv) -> int:
    """How many sealed secrets of the store do not open with its key file."""
    with env.read() as txn:
        unreadable = sum(
            env.sealer.unreadable(json.loads(raw), "settings")
            for _, raw in txn.cursor(db=env.db.settings)
        )
        for name in RECORD_SECRETS:
            for _, raw in txn.cursor(db=table(env.db, name)):
                unreadable += env.sealer.unreadable(json.loads(raw), name)
    return unreadable
