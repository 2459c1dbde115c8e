"""The service tree: every service runs under a restart loop, and one crash never reaches another.

A service is an object with a ``name`` and ``async def run(self, *, task_status)``; it calls
``task_status.started()`` once it is ready (its port open, its line owned). ``Supervisor.run``
starts each service and reports ready once every service is ready or has failed its first
attempt: a broken optional service must not hold up boot. A crash is written to the system log
and the service is started again after a backoff (1 s, 2 s, 4 s … 60 s, ±10 % jitter; back to 1 s
after five healthy minutes). ``restart(names)`` restarts services at once, without backoff, for
a settings change. Cancellation passes straight through: only ``Exception`` is caught.

Shutdown has a deadline: ``shutdown(grace)`` asks every service that can finish on its own (it
has ``stop()``: the web server stops accepting and answers the requests in flight) to do so and
waits up to ``grace`` seconds for them, the others still running meanwhile (a request in flight
may need a line); then the caller cancels the tree. What went wrong is logged as one entry.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from mbusgw.gateway.errors import describe

# System-log levels as the product numbers them (the store keeps the same numbers).
DEBUG, INFO, WARNING, ERROR = -1, 0, 1, 2

LogFunction = Callable[[int, str, str], None]
"""``log(level, origin, text)``: where the supervisor reports crashes and restarts."""


class Service(Protocol):
    name: str

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None: ...


class Stoppable(Protocol):
    """A service that can end on its own: after ``stop()`` its ``run`` returns once done."""

    name: str

    def stop(self) -> None: ...


@dataclass
class Backoff:
    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.1
    healthy_after: float = 300.0
    _next: float = field(default=0.0, init=False)

    def reset(self) -> None:
        self._next = self.initial

    def next_delay(self, rng: random.Random) -> float:
        delay = self._next or self.initial
        self._next = min(delay * self.factor, self.cap)
        return delay * (1 + rng.uniform(-self.jitter, self.jitter))


@dataclass
class ServiceState:
    """What the UI, the API and SNMP show about one service."""

    name: str
    state: str = "starting"  # starting | running | waiting | stopped
    restarts: int = 0
    crashes: int = 0
    last_error: str | None = None
    since: float = 0.0


class Supervisor:
    def __init__(
        self,
        log: LogFunction,
        *,
        backoff: Backoff | None = None,
        seed: int | None = None,
        on_restart: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_restart(name, reason)``: told each time a service starts again."""
        self._log = log
        self._on_restart = on_restart
        self._backoff_template = backoff or Backoff()
        self._rng = random.Random(seed)
        self._scopes: dict[str, trio.CancelScope] = {}
        self._restart_requested: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._stoppable: dict[str, tuple[Stoppable, trio.Event]] = {}
        self.stopping = False
        self.states: dict[str, ServiceState] = {}

    async def run(
        self, services: Iterable[Service], *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the services until cancelled; ready once each has had its first attempt."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for service in services:
                await nursery.start(self._supervise, service)
            task_status.started()

    async def add(self, service: Service) -> None:
        """Start one more service under supervision (the tree must be running)."""
        if self._nursery is None:
            raise RuntimeError("the supervisor is not running")
        await self._nursery.start(self._supervise, service)

    def start_soon(self, fn: Callable[..., Any], *args: Any, name: str | None = None) -> None:
        """Run a one-off task (a manual reading, a search) beside the services; it ends with
        the tree. Its errors are logged, never raised into the tree, under ``name`` (what a
        person calls the task; by default the function's name)."""
        if self._nursery is None:
            raise RuntimeError("the supervisor is not running")
        self._nursery.start_soon(self._contained, fn, args, name or fn.__name__)

    async def _contained(self, fn: Callable[..., Any], args: tuple[Any, ...], name: str) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            self._log(ERROR, name, f"failed: {describe(exc)}")

    async def shutdown(self, grace: float) -> list[str]:
        """Ask the services that have ``stop()`` to finish and wait for them, at most ``grace``
        seconds; returns the names of those still running (the caller cancels the tree)."""
        self.stopping = True
        problems = []
        waiting = {}
        for name, (service, done) in self._stoppable.items():
            if self.states[name].state == "waiting":  # crashed, in its backoff: not restarted
                done.set()
                continue
            try:
                service.stop()
            except Exception as exc:
                problems.append(f"{name}: {describe(exc)}")
            else:
                waiting[name] = done
        with trio.move_on_after(grace):
            for done in waiting.values():
                await done.wait()
        late = [name for name, done in waiting.items() if not done.is_set()]
        if late:
            problems.append(f"still running after {grace:g} s, cancelled: {', '.join(late)}")
        if problems:
            self._log(WARNING, "shutdown", "; ".join(problems))
        return late

    def restart(self, names: Iterable[str]) -> list[str]:
        """Restart the named services now (a settings change); returns the names not known."""
        unknown = []
        for name in names:
            scope = self._scopes.get(name)
            if scope is None:
                unknown.append(name)
                continue
            self._restart_requested.add(name)
            scope.cancel()
        return unknown

    async def _supervise(self, service: Service, *, task_status: Any) -> None:
        name = service.name
        state = self.states.setdefault(name, ServiceState(name))
        backoff = Backoff(
            **{
                k: getattr(self._backoff_template, k)
                for k in ("initial", "factor", "cap", "jitter", "healthy_after")
            }
        )
        reported = False
        if callable(getattr(service, "stop", None)):
            self._stoppable[name] = (service, trio.Event())  # type: ignore[assignment]

        def mark_ready() -> None:
            nonlocal reported
            state.state, state.since = "running", trio.current_time()
            if not reported:
                reported = True
                task_status.started()

        while True:
            started = trio.current_time()
            state.state, state.since = "starting", started
            with trio.CancelScope() as scope:
                self._scopes[name] = scope
                try:
                    await self._attempt(service, mark_ready)
                    if self.stopping and name in self._stoppable:
                        state.state, state.since = "stopped", trio.current_time()
                        self._stoppable[name][1].set()
                        if not reported:
                            task_status.started()
                        return
                    state.last_error = "returned without being stopped"
                    self._log(ERROR, name, "service stopped on its own; starting it again")
                except Exception as exc:
                    state.crashes += 1
                    state.last_error = describe(exc)
                    self._log(ERROR, name, f"service crashed: {state.last_error}")
            if not reported:
                reported = True
                task_status.started()
            state.restarts += 1
            if scope.cancelled_caught and name in self._restart_requested:
                self._restart_requested.discard(name)
                self._log(INFO, name, "service restarted after a settings change")
                self._told_restart(name, "settings changed")
                backoff.reset()
                continue
            if trio.current_time() - started >= backoff.healthy_after:
                backoff.reset()
            delay = backoff.next_delay(self._rng)
            state.state, state.since = "waiting", trio.current_time()
            await trio.sleep(delay)
            if self.stopping:  # no new attempt once the shutdown began
                state.state = "stopped"
                if name in self._stoppable:
                    self._stoppable[name][1].set()
                await trio.sleep_forever()
            self._told_restart(name, state.last_error or "stopped on its own")

    def _told_restart(self, name: str, reason: str) -> None:
        if self._on_restart is not None:
            self._on_restart(name, reason)

    @staticmethod
    async def _attempt(service: Service, ready: Callable[[], None]) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            ready()


@dataclass
class FunctionService:
    """A service made of one async function ``fn(task_status=...)`` (small tasks, tests)."""

    name: str
    fn: Callable[..., Any]

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.fn(task_status=task_status)
