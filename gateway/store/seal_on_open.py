"""Sealing the secrets that a store written before sealing existed holds in clear.

Called whenever a store is opened for writing; it changes nothing in a store whose secrets are
all sealed. Every clear-text secret (settings and records, see ``gateway/store/sealing.py``) is
sealed in one transaction: a failure leaves the store as it was, to be tried again next time.
It also counts the sealed secrets that do not open with the key file (a store moved without
it), which read as unset.
"""

from __future__ import annotations

import json

from mbusgw.gateway.store.env import StoreEnv
from mbusgw.gateway.store.records import table
from mbusgw.gateway.store.sealing import RECORD_SECRETS
from mbusgw.gateway.store.settings_table import (
    has_clear_secrets,
    read_settings,
    sealed_settings,
)


def seal_clear_secrets(env: StoreEnv) -> tuple[int, int]:
    """Seal every secret stored in clear. Returns how many records were rewritten and how many
    sealed secrets do not open with the key file."""
    rewritten = unreadable = 0
    with env.write() as txn:
        stored = {key.decode(): json.loads(raw) for key, raw in txn.cursor(db=env.db.settings)}
        unreadable += env.sealer.unreadable(stored, "settings")
        sealed = sealed_settings(read_settings(txn, env), env)
        for name, value in sealed.items():
            if has_clear_secrets(stored.get(name), value):
                txn.put(name.encode(), json.dumps(value).encode(), db=env.db.settings)
                rewritten += 1
        for name in RECORD_SECRETS:
            db = table(env.db, name)
            for key, raw in list(txn.cursor(db=db)):
                record = json.loads(raw)
                unreadable += env.sealer.unreadable(record, name)
                record_sealed = env.sealer.seal_record(name, record)
                if record_sealed is not record:
                    txn.put(key, json.dumps(record_sealed, allow_nan=False).encode(), db=db)
                    rewritten += 1
    return rewritten, unreadable
