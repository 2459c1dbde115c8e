"""Named JSON records: users, keys, push-report delivery cursors and the installed meters.

The store keeps them atomically and durably; what a record holds is the business of the part
that owns it (passwords arrive hashed, AES keys are secrets: the store never logs them and
keeps them sealed, see ``gateway/store/sealing.py``).
"""

from __future__ import annotations

import json

import lmdb

from mbusgw.gateway.errors import StoreError
from mbusgw.gateway.store.context import WriteContext
from mbusgw.gateway.store.env import Databases, StoreEnv
from mbusgw.gateway.store.keys import text_key
from mbusgw.gateway.store.model import MAX_NAME

RECORD_TABLES = ("users", "keys", "cursors", "installation")


def table(db: Databases, name: str) -> lmdb._Database:
    if name not in RECORD_TABLES:
        raise ValueError(f"no record table {name!r}; there are {', '.join(RECORD_TABLES)}")
    return getattr(db, name)


def read_records(txn: lmdb.Transaction, env: StoreEnv, name: str) -> dict[str, object]:
    return {
        key.decode(): env.sealer.open_tree(json.loads(raw), name)
        for key, raw in txn.cursor(db=table(env.db, name))
    }


def read_record(txn: lmdb.Transaction, env: StoreEnv, name: str, key: str) -> object | None:
    raw = txn.get(text_key(key), db=table(env.db, name))
    return None if raw is None else env.sealer.open_tree(json.loads(raw), name)


def put_record(ctx: WriteContext, name: str, key: str, record: object) -> None:
    if not isinstance(key, str) or not 0 < len(key.encode()) <= MAX_NAME:
        raise ValueError(f"record names must be 1..{MAX_NAME} bytes of text")
    record = ctx.env.sealer.seal_record(name, record)
    try:
        data = json.dumps(record, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise StoreError(f"record {key!r} is not plain JSON data: {error}") from error
    ctx.txn.put(text_key(key), data, db=table(ctx.db, name))


def delete_record(ctx: WriteContext, name: str, key: str) -> bool:
    return ctx.txn.delete(text_key(key), db=table(ctx.db, name))


def replace_records(ctx: WriteContext, name: str, records: dict[str, object]) -> None:
    """Make table ``name`` hold exactly ``records`` (within the caller's transaction)."""
    db = table(ctx.db, name)
    wanted = {text_key(key) for key in records}
    stale = [key for key in ctx.txn.cursor(db=db).iternext(values=False) if key not in wanted]
    for key in stale:
        ctx.txn.delete(key, db=db)
    for key, record in records.items():
        put_record(ctx, name, key, record)
