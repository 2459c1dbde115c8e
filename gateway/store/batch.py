"""Running write operations as one durable transaction, and what happens when the map is full.

Each operation runs in a nested transaction: one that fails (bad input, a bug) is rolled back
and reports its error to its caller alone; the others commit. Pending system log entries are
written in the same transaction. ``MapFullError`` aborts the whole batch, which is then retried
after the map has grown (up to ``store.max_bytes``) or, at the limit, after the oldest data has
been pruned by policy: raw telegrams first, then the system log, then the oldest day of values.
Every growth and every pruning step is written to the system log. The process never crashes
on a full map: when nothing more can be pruned the operations fail with ``StoreFull``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lmdb

from mbusgw.gateway.errors import StoreError, StoreFull
from mbusgw.gateway.settings import Settings
from mbusgw.gateway.store.catalog import Catalog, CatalogBatch
from mbusgw.gateway.store.context import WriteContext
from mbusgw.gateway.store.env import MiB, StoreEnv, put_u64
from mbusgw.gateway.store.retention import prune_oldest
from mbusgw.gateway.store.settings_table import read_settings
from mbusgw.gateway.store.space import commit_failure, disk_room_for_map
from mbusgw.gateway.store.syslog import LogEntry, LogLevel
from mbusgw.gateway.store.syslog_table import write_entries

MAX_ATTEMPTS = 12
MAX_CARRIED = 1000
# normal growth stops short of the limit, so pruning (which needs pages too) always has room
PRUNE_HEADROOM = 0.97


class WriteOp:
    """One caller's operation: ``fn(ctx)`` runs inside the batch transaction."""

    __slots__ = ("fn", "result", "error", "done")

    def __init__(self, fn: Callable[[WriteContext], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done: Any = None  # a trio.Event when submitted to the writer task

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class BatchRunner:
    """Commits batches of operations; one runner per store, called from one thread at a time."""

    def __init__(
        self,
        env: StoreEnv,
        catalog: Catalog,
        settings: Settings,
    ) -> None:
        self.env = env
        self.catalog = catalog
        self.settings = settings
        self.time = 0.0  # the batch's wall time, given by the caller (clocks live in trio)
        self.status_bytes: dict[int, int] = {}
        self._carried: list[LogEntry] = []  # growth/pruning events for the next commit
        self.on_settings_changed: Callable[[Settings], None] = lambda settings: None

    def run(self, ops: list[WriteOp], entries: list[LogEntry], now: float) -> None:
        """Commit ``ops`` and ``entries`` durably; each op ends with a result or an error.

        ``now`` is the wall-clock time of the batch (seconds since the epoch, UTC).
        """
        self.time = now
        error: StoreError
        try:
            for _ in range(MAX_ATTEMPTS):
                try:
                    self._attempt(ops, entries)
                    return
                except lmdb.MapFullError:
                    if not self._make_room():
                        break
            error = StoreFull(
                f"the store reached {self.env.map_size // MiB} MiB and nothing more could be pruned"
            )
        except lmdb.Error as failure:  # a disk or file error: this batch fails, not the writer
            error = commit_failure(failure, self.env.path)
        for op in ops:
            op.result, op.error = None, error
        # the log entries are tried again with the next batch (bounded: the newest are kept)
        self._carried = [*self._carried, *entries][-MAX_CARRIED:]
        self._carried.append(LogEntry(self.time, LogLevel.ERROR, "store", str(error)))

    def _attempt(self, ops: list[WriteOp], entries: list[LogEntry]) -> None:
        with self.env.write() as txn:
            ctx = self._context(txn)
            for op in ops:
                self._run_one(ctx, txn, op)
            ctx.txn = txn
            write_entries(ctx, [*self._carried, *entries, *ctx.events])
        # durable: only now may anyone see what this batch created
        self._carried.clear()
        ctx.catalog.publish()
        self.status_bytes.update(ctx.status_bytes)
        if ctx.settings_changed:
            with self.env.read() as txn:
                self.settings = read_settings(txn, self.env)
            self.on_settings_changed(self.settings)

    def _context(self, txn: lmdb.Transaction) -> WriteContext:
        return WriteContext(
            self.env,
            txn,
            CatalogBatch(self.catalog, txn, self.env.db),
            self.settings,
            self.time,
            committed_status_bytes=self.status_bytes,
        )

    @staticmethod
    def _run_one(ctx: WriteContext, parent: lmdb.Transaction, op: WriteOp) -> None:
        checkpoint = ctx.catalog.checkpoint()
        status_bytes = dict(ctx.status_bytes)
        events = len(ctx.events)
        changed = ctx.settings_changed
        nested = ctx.env.env.begin(write=True, parent=parent)
        ctx.txn = ctx.catalog.txn = nested
        try:
            op.result, op.error = op.fn(ctx), None
            nested.commit()
        except lmdb.MapFullError:
            nested.abort()
            raise
        except Exception as error:  # the caller's problem: roll back this op only
            nested.abort()
            op.result, op.error = None, error
            ctx.catalog.rollback(checkpoint)
            ctx.status_bytes = status_bytes
            del ctx.events[events:]
            ctx.settings_changed = changed
        finally:
            ctx.txn = ctx.catalog.txn = parent

    def _make_room(self) -> bool:
        """Grow the map, or at the size limit prune the oldest data; False if neither helps.

        The limit is the smaller of ``store.max_bytes`` and what the disk can hold now: a map
        larger than the disk would only trade pruning by policy for failed commits."""
        size = self.env.map_size
        limit = min(self.settings.store.max_bytes, max(size, disk_room_for_map(self.env.path)))
        soft_limit = int(limit * PRUNE_HEADROOM)
        target = soft_limit if size < soft_limit else limit
        if size < target:
            new_size = min(target, max(size * 2, size + 16 * MiB))
            self.env.grow(new_size)
            self._carried.append(
                LogEntry(
                    self.time,
                    LogLevel.INFO,
                    "store",
                    f"store map grown from {size // MiB} MiB to {new_size // MiB} MiB",
                )
            )
            return True
        try:
            with self.env.write() as txn:
                pruned = prune_oldest(self._context(txn))
        except lmdb.MapFullError:
            return False
        if pruned is None:
            return False
        # LMDB reuses pages freed by a transaction only from the second transaction after it
        # (the last snapshot must stay intact for crash recovery): commit an empty step first.
        with self.env.write() as txn:
            put_u64(txn, self.env.db.meta, b"pruned_at", int(self.time))
        self._carried.append(
            LogEntry(
                self.time, LogLevel.WARNING, "store", f"store full at {limit // MiB} MiB: {pruned}"
            )
        )
        return True
