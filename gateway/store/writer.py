"""``StoreWriter``: the one task that writes to the store (a supervised service).

Callers ``await writer.put_readings(cycle)`` (or ``submit(fn)`` for any other write). Requests
queue on a trio memory channel; the writer takes everything queued, runs it as one durable LMDB
transaction in a worker thread (``trio.to_thread.run_sync``: the transaction begins and ends in
that call and never spans an ``await``) and then answers every caller. An answer means the data
is on disk. The system log's pending entries ride along with the next batch, or are flushed on
their own after ``FLUSH_DELAY`` (and at each silencing window's end for its summary line).

Shutdown: ``close()`` stops intake; the writer commits what is queued and returns. If the
writer is cancelled instead, a commit in progress still completes (threads are not abandoned)
and requests still queued fail with ``StoreClosed``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import trio

from mbusgw.gateway.errors import StoreClosed
from mbusgw.gateway.settings import Settings
from mbusgw.gateway.store import records
from mbusgw.gateway.store.batch import WriteOp
from mbusgw.gateway.store.context import WriteContext
from mbusgw.gateway.store.ingest import Receipt, admit, write_readings
from mbusgw.gateway.store.model import StoredReading
from mbusgw.gateway.store.settings_table import update_settings
from mbusgw.gateway.store.store import Store

T = TypeVar("T")
_NUDGE = object()  # wakes the writer to look at the system log's deadline again


class StoreWriter:
    """The single writer of a ``Store``."""

    name = "store-writer"

    def __init__(
        self,
        store: Store,
        *,
        max_ops_per_batch: int = 256,
        queue_size: int = 1024,
        in_thread: bool = True,
    ) -> None:
        """``in_thread=False`` commits on the trio thread itself: for tests on MockClock,
        whose autojump would otherwise race ahead while a worker thread commits."""
        self.store = store
        self.max_ops_per_batch = max_ops_per_batch
        self.queue_size = queue_size
        self.in_thread = in_thread
        self._send: trio.MemorySendChannel[Any] | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._limiter = trio.CapacityLimiter(1)
        self.batches = 0

    # -- the service -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.store.writer_running:
            raise RuntimeError("this store already has a running StoreWriter")
        send, receive = trio.open_memory_channel[Any](self.queue_size)
        self._send = send
        self._token = trio.lowlevel.current_trio_token()
        self.store.writer_running = True
        self.store.log.on_pending = self._nudge
        task_status.started()
        try:
            await self._loop(receive)
        finally:
            self._send = None
            self.store.log.on_pending = lambda: None
            self.store.writer_running = False
            _fail_queued(receive)
            receive.close()

    async def _loop(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        log = self.store.log
        store = self.store
        closing = False
        while not closing:
            ops: list[WriteOp] = []
            deadline = log.next_deadline()
            timeout = math.inf if deadline is None else max(0.0, deadline - store.now())
            with trio.move_on_after(timeout):
                try:
                    item = await receive.receive()
                    if item is not _NUDGE:
                        ops.append(item)
                except trio.EndOfChannel:
                    closing = True
            while not closing and len(ops) < self.max_ops_per_batch:
                try:
                    item = receive.receive_nowait()
                except trio.WouldBlock:
                    break
                except trio.EndOfChannel:
                    closing = True
                    break
                if item is not _NUDGE:
                    ops.append(item)
            due = (deadline := log.next_deadline()) is not None and deadline <= store.now()
            if not (ops or due or closing):
                continue  # a nudge: wait again with the new deadline
            entries = log.take()
            if not (ops or entries):
                continue
            try:
                await self._commit(ops, entries, store.now())
            except Exception as error:  # a bug: answer the callers, then let the supervisor see it
                for op in ops:
                    op.result, op.error = None, StoreClosed(f"the store writer failed: {error!r}")
                raise
            finally:
                # no checkpoint since the commit returned: every caller gets its answer
                for op in ops:
                    op.done.set()
            self.batches += 1

    async def _commit(self, ops: list[WriteOp], entries: list, now: float) -> None:
        runner = self.store.runner
        if self.in_thread:
            await trio.to_thread.run_sync(runner.run, ops, entries, now, limiter=self._limiter)
        else:
            runner.run(ops, entries, now)
            await trio.lowlevel.checkpoint()

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking store work (a long read) in a worker thread, or inline like commits."""
        if self.in_thread:
            return await trio.to_thread.run_sync(fn, *args)
        result = fn(*args)
        await trio.lowlevel.checkpoint()
        return result

    def close(self) -> None:
        """Stop taking requests; the writer commits what is queued, then ``run`` returns."""
        if self._send is not None:
            self._send.close()

    def _nudge(self) -> None:
        if self._send is None or self._token is None:
            return
        try:
            trio.lowlevel.current_task()
        except RuntimeError:  # called from another thread: hop onto the trio loop first
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._poke)
            return
        self._poke()

    def _poke(self) -> None:
        if self._send is not None:
            # a full queue or a closing writer will look at the log's deadline anyway
            with contextlib.suppress(
                trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError
            ):
                self._send.send_nowait(_NUDGE)

    # -- requests ---------------------------------------------------------------------------

    async def submit(self, fn: Callable[[WriteContext], T]) -> T:
        """Run ``fn(ctx)`` in the next batch; returns its result once the batch is on disk."""
        send = self._send
        if send is None:
            raise StoreClosed("the store writer is not running")
        op = WriteOp(fn)
        op.done = trio.Event()
        try:
            await send.send(op)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise StoreClosed("the store writer is shutting down") from None
        await op.done.wait()
        return op.outcome()

    async def flush(self) -> None:
        """Return once everything logged or submitted before this call is on disk."""
        await self.submit(lambda ctx: None)

    async def put_readings(self, readings: Sequence[StoredReading]) -> Receipt:
        """Store a reading cycle in one transaction; returns once it is durable. A reading the
        store cannot take is refused alone (logged, and named in ``Receipt.refused``)."""
        # checked in the caller's task: a bad reading never reaches the batch
        good, refused = admit(readings, self.store.log)
        receipt = await self.submit(lambda ctx: write_readings(ctx, good))
        return replace(receipt, refused=refused)

    async def update_settings(self, changes: dict[str, Any]) -> Settings:
        """Merge ``changes`` (nested, only what changes) into the settings; all or nothing.

        Raises ``ConfigError`` naming every bad field; returns the settings now in force.
        """
        return await self.submit(lambda ctx: update_settings(ctx, changes))

    async def put_record(self, table: str, name: str, record: object) -> None:
        """Create or replace a user, key or delivery cursor record."""
        records.table(self.store.env.db, table)
        await self.submit(lambda ctx: records.put_record(ctx, table, name, record))

    async def delete_record(self, table: str, name: str) -> bool:
        records.table(self.store.env.db, table)
        return await self.submit(lambda ctx: records.delete_record(ctx, table, name))


def _fail_queued(receive: trio.MemoryReceiveChannel[Any]) -> None:
    while True:
        try:
            item = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        if item is not _NUDGE:
            item.error = StoreClosed("the store writer stopped before this write")
            item.done.set()
