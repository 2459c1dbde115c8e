"""The native bus driver: one OS thread per line runs the line's ``BusProtocol`` with blocking
waits on the line's descriptor, outside the trio clock and its scheduler.

Requests are taken from trio exactly as ``BusMaster`` takes them (same methods, same results and
errors); what the thread finishes is handed back to trio in batches (``gateway.handback``, shared
by every line): one trio wake-up serves every reply (and every ``on_exchange``/``on_telegram``
call) that finished since the last one, so trio is not woken per byte, nor per exchange while it
is busy. A round's readings do their thread-safe part (``prepare``: decode, the snapshot) in the
thread as each is read, and wait for the next batch, at most ``HAND_BACK_INTERVAL``, for the
rest. Each job runs in the compiled loop of ``gateway.lineloop``: its waits are ``poll`` calls on
the descriptor with the protocol's deadline as timeout and the GIL released, so the bus keeps its
timing while the trio side is busy (a big report, Modbus and REST), and a line costs a few
system calls per exchange. Times are the trio clock's (read in C from the thread), so readings
carry the same times as under the trio driver.

Opening and reopening the line stays with the transport on the trio side (``ensure_open``,
``broken``); the thread asks for it when it needs the descriptor.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import select
import threading
from collections.abc import Callable
from typing import Any

import outcome
import trio

from mbusgw.gateway import busjobs as jobs
from mbusgw.gateway import lineloop
from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.busjobs import fail_ops
from mbusgw.gateway.errors import LineDown
from mbusgw.gateway.handback import HandBack


class _Stopped(Exception):
    """The driver is stopping: the request in hand is left to the trio side."""


class ThreadedBusMaster(BusMaster):
    """A ``BusMaster`` whose line is driven by an OS thread. Start ``run`` in a nursery as
    usual; it keeps the thread for as long as it runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: collections.deque[tuple[Any, jobs.Reply]] = collections.deque()
        self._wake_read = self._wake_write = -1  # a pipe while running: wakes the thread
        self._hand_back: HandBack | None = None  # while running
        self._stop = False
        self._in_hand: list[jobs.Reply] = []  # a round serves others in between
        self._token: trio.lowlevel.TrioToken | None = None
        self._line_clock: lineloop.LineClock | None = None
        self._lowat = (-1, False)  # a descriptor, and whether it takes SO_RCVLOWAT
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the trio side

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._token = trio.lowlevel.current_trio_token()
        hand_back = self._hand_back = HandBack.shared()
        self._line_clock = lineloop.LineClock(trio.lowlevel.current_clock())
        self._stop = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        thread = threading.Thread(target=self._thread_main, name=f"bus {self.name}", daemon=True)
        self._thread = thread
        self._running = True
        thread.start()
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._running = False
            self._stop = True
            self._wake()
            # it leaves at its next wake-up, which this one is (trio keeps running meanwhile:
            # the thread may be waiting for the line to open)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join)
            os.close(self._wake_read)
            os.close(self._wake_write)
            self._wake_read = self._wake_write = -1
            self.protocol.abort()
            stopped = LineDown(f"{self.name}: the bus task stopped")
            hand_back.deliver()  # what finished before the stop is the callers'
            waiting = self._in_hand + [reply for _, reply in self._queue]
            self._in_hand = []
            self._queue.clear()
            for reply in waiting:
                if not reply.done.is_set():
                    reply.result = outcome.Error(stopped)
                    reply.done.set()
            self._hand_back = None
            hand_back.release()

    async def _enqueue(self, request: Any, reply: jobs.Reply) -> None:
        self._queue.append((request, reply))
        self._wake()

    async def _round(
        self,
        reads: tuple[jobs.Read, ...],
        on_read: Callable[[int, Any], None],
        prepare: jobs.Prepare | None,
    ) -> None:
        """The round as one request to the thread: nothing goes from trio to the thread per
        meter. Without ``prepare`` each reading comes back with the next batch, at once; with
        it, ``prepare`` runs in the thread as each meter is read and ``on_read`` with the
        batch it joins (``on_read`` runs in trio; if it raises, the round ends with its
        error)."""
        if reads:
            await self.submit(jobs.Round(reads, on_read, prepare))

    def _wake(self) -> None:
        if self._wake_write < 0:
            return  # not running: nothing to wake
        with contextlib.suppress(BlockingIOError):  # full: the thread is to wake anyway
            os.write(self._wake_write, b"w")

    def _hand_over(self, call: Callable[..., Any], *args: Any) -> None:
        """From the thread: run ``call(*args)`` in trio with the next batch, at once."""
        assert self._hand_back is not None
        self._hand_back.call(call, *args)

    def _callback(
        self, reply: jobs.Reply, call: Callable[..., Any], *args: Any, urgent: bool = True
    ) -> None:
        """From the thread: a caller's callback, run in trio; if it raises, the request fails
        with its error, as under the trio driver."""
        assert self._hand_back is not None
        self._hand_back.call(_run_callback, reply, call, args, urgent=urgent)

    # ------------------------------------------------------------------ the thread

    def _thread_main(self) -> None:
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        try:
            while not self._stop:
                if not self._queue:
                    poller.poll()
                    self._drain_wake()
                    continue
                self._serve_next()
        except _Stopped:
            return

    def _serve_next(self) -> None:
        """Serve the first queued request and hand its result to trio."""
        request, reply = self._queue.popleft()
        self._in_hand.append(reply)
        try:
            result = outcome.Value(self._serve_blocking(request, reply))
        except _Stopped:
            raise
        except Exception as exc:  # the caller gets it; the line keeps serving
            result = outcome.Error(_line_error(self.name, exc))
        self._in_hand.pop()
        self._hand_over(_settle_reply, reply, result)

    def _serve_round(self, round_: jobs.Round, reply: jobs.Reply) -> None:
        """Each read of the round in turn, its outcome handed to trio as soon as it is done;
        requests queued meanwhile go in between two reads, so a manual read or a scan waits
        for one meter, not for the round."""
        for k, read in enumerate(round_.reads):
            while self._queue:
                self._serve_next()
            if self._stop:
                raise _Stopped
            if reply.failure is not None:
                return  # ``on_read`` raised: the round ends with its error
            try:
                got = self._serve_job(read, reply)
            except _Stopped:
                raise
            except Exception as exc:  # that meter's outcome; the round goes on
                got = _line_error(self.name, exc)
            if round_.prepare is None:
                self._callback(reply, round_.on_read, k, got)
                continue
            try:
                prepared, urgent = round_.prepare(k, got)
            except Exception as exc:  # as if ``on_read`` had raised: the round ends with it
                self._hand_over(_fail_round, reply, exc)
                return
            if urgent is None:
                continue  # trio has nothing to do for it
            assert self._hand_back is not None
            self._hand_back.call(_run_prepared, reply, round_.on_read, k, prepared, urgent=urgent)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass

    def _open(self) -> int:
        """The line's descriptor, opening the line through trio if it is not open."""
        fd = self.transport.descriptor()
        if fd < 0:
            assert self._token is not None
            try:
                trio.from_thread.run(self.transport.ensure_open, trio_token=self._token)
            except trio.RunFinishedError as exc:
                raise _Stopped from exc
            fd = self.transport.descriptor()
        if fd < 0:
            raise trio.BrokenResourceError(f"{self.name} has no descriptor")
        if fd != self._lowat[0]:  # asked once per connection, not per job
            self._lowat = (fd, self.transport.set_receive_threshold(1))
        return fd

    def _broken(self, error: BaseException) -> LineDown:
        assert self._token is not None
        if isinstance(error, EOFError):
            error = trio.BrokenResourceError(str(error))
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run(self.transport.broken, error, trio_token=self._token)
        down = LineDown(f"{self.name}: {error}")
        down.__cause__ = error
        return down

    def _serve_blocking(self, request: Any, reply: jobs.Reply) -> Any:
        protocol = self.protocol
        if type(request) is jobs.SetBaud:
            protocol.links.forget_all()
            self.transport.set_baudrate(request.baud)
            return None
        if type(request) is jobs.Hold:
            return self._serve_hold(request)  # its ops have their own replies
        if type(request) is jobs.Round:
            return self._serve_round(request, reply)
        return self._serve_job(request, reply)

    def _serve_job(self, request: Any, reply: jobs.Reply) -> Any:
        """A job of the protocol (a read, a ping, a scan step, a transfer) to its end."""
        protocol = self.protocol
        clock = self._line_clock
        assert clock is not None
        on_telegram = request.on_telegram if type(request) is jobs.Read else None
        fd = self._open()
        try:
            lineloop.drain(protocol, fd, clock)
        except (OSError, EOFError) as exc:
            self._broken(exc)
            fd = self._open()  # it broke while idle: open it again, as the trio driver's send does
        finish = self.begin(request, clock.now())
        dispatch = None  # no callback to pass events on to: the loop finds the job's end
        if on_telegram is not None or self.on_exchange is not None:
            # ``on_exchange`` and ``on_telegram`` (a monitor, a progress display) may wait for
            # the batch: the reply comes after them all the same
            callback = functools.partial(self._callback, reply, urgent=False)

            def dispatch(events: list[Any]) -> Any:
                return self.dispatch(events, on_telegram, callback)

        try:
            ended = lineloop.serve(
                protocol,
                fd,
                self._wake_read,
                clock,
                dispatch,
                self._stopping,
                self.transport,
                self._lowat[1],
            )
        except lineloop.Stopped as exc:
            raise _Stopped from exc
        except (OSError, EOFError) as exc:
            raise self._broken(exc) from exc
        return self.result(ended, finish)

    def _stopping(self) -> bool:
        return self._stop

    def _notify(self, hold: jobs.Hold) -> None:
        self._wake()

    def _serve_hold(self, hold: jobs.Hold) -> None:
        """Serve the holder of the line until it gives the line back."""
        self._hand_over(hold.granted.set)
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        try:
            while True:
                while not hold.ops:
                    poller.poll()
                    self._drain_wake()
                    if self._stop:
                        raise _Stopped
                request, reply = hold.ops.popleft()
                if reply is None:
                    return
                try:
                    result = outcome.Value(self._serve_blocking(request, reply))
                except _Stopped:
                    raise
                except Exception as exc:
                    result = outcome.Error(exc)
                self._hand_over(_settle_reply, reply, result)
        except _Stopped:
            self._hand_over(fail_ops, hold, LineDown(f"{self.name}: the bus task stopped"))
            raise


def _line_error(name: str, error: Exception) -> Exception:
    """The caller's error for what failed a request in the thread."""
    if isinstance(error, trio.BrokenResourceError):
        down = LineDown(f"{name}: {error}")
        down.__cause__ = error
        return down
    return error


def _run_callback(reply: jobs.Reply, call: Callable[..., Any], args: tuple[Any, ...]) -> None:
    if reply.failure is None:
        try:
            call(*args)
        except Exception as exc:
            reply.failure = exc


def _run_prepared(reply: jobs.Reply, call: Callable[..., Any], k: int, prepared: Any) -> None:
    """The trio side of a reading whose thread side ran: it runs even after an earlier reading's
    ``on_read`` raised (the reading is in the snapshot already, so it is accounted too); the
    first error is the round's."""
    try:
        call(k, prepared)
    except Exception as exc:
        if reply.failure is None:
            reply.failure = exc


def _fail_round(reply: jobs.Reply, error: Exception) -> None:
    if reply.failure is None:
        reply.failure = error


def _settle_reply(reply: jobs.Reply, result: outcome.Outcome) -> None:
    reply.result = result if reply.failure is None else outcome.Error(reply.failure)
    reply.done.set()
