"""The supervisor: readiness, crash containment, backoff, restarts on request, shutdown."""

from __future__ import annotations

import trio
import trio.testing

from mbusgw.gateway.supervisor import ERROR, INFO, Backoff, FunctionService, Supervisor


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[int, str, str]] = []

    def __call__(self, level: int, origin: str, text: str) -> None:
        self.lines.append((level, origin, text))


def ticker(counter: list[int], period: float = 1.0):
    async def run(*, task_status) -> None:
        task_status.started()
        while True:
            await trio.sleep(period)
            counter.append(1)

    return run


async def test_crash_is_contained_and_restarted_with_backoff(autojump_clock) -> None:
    log = Recorder()
    ticks: list[int] = []
    attempts: list[float] = []

    async def crashy(*, task_status) -> None:
        attempts.append(trio.current_time())
        task_status.started()
        await trio.sleep(0.5)
        raise OSError("line gone")

    supervisor = Supervisor(log, backoff=Backoff(jitter=0), seed=1)
    services = [FunctionService("crashy", crashy), FunctionService("reader", ticker(ticks))]
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run, services)
        await trio.sleep(20.5)
        nursery.cancel_scope.cancel()
    # the healthy service kept running the whole time
    assert len(ticks) == 20
    # restarts after 1, 2, 4, 8 s of backoff (plus the 0.5 s each attempt lived)
    gaps = [round(b - a, 3) for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[:4] == [1.5, 2.5, 4.5, 8.5]
    assert len(attempts) == 5  # at 0, 1.5, 4, 8.5 and 17 s; each crashed 0.5 s later
    assert supervisor.states["crashy"].crashes == 5
    assert (ERROR, "crashy", "service crashed: OSError: line gone") in log.lines
    assert supervisor.states["reader"].state == "running"


async def test_ready_even_when_a_service_fails_its_first_start(autojump_clock) -> None:
    log = Recorder()

    async def broken(*, task_status) -> None:
        raise RuntimeError("port 502 in use")

    supervisor = Supervisor(log, seed=2)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(1):
            await nursery.start(supervisor.run, [FunctionService("modbus", broken)])
        assert supervisor.states["modbus"].last_error == "RuntimeError: port 502 in use"
        nursery.cancel_scope.cancel()


async def test_restart_on_request_is_immediate(autojump_clock) -> None:
    log = Recorder()
    starts: list[float] = []

    async def service(*, task_status) -> None:
        starts.append(trio.current_time())
        task_status.started()
        await trio.sleep_forever()

    supervisor = Supervisor(log, seed=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run, [FunctionService("web", service)])
        await trio.sleep(10)
        assert supervisor.restart(["web", "nonexistent"]) == ["nonexistent"]
        await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert starts == [0.0, 10.0]
    assert (INFO, "web", "service restarted after a settings change") in log.lines


async def test_backoff_resets_after_a_healthy_run(autojump_clock) -> None:
    log = Recorder()
    attempts: list[float] = []
    lifetimes = iter([0.0, 0.0, 400.0, 0.0])

    async def flaky(*, task_status) -> None:
        attempts.append(trio.current_time())
        task_status.started()
        await trio.sleep(next(lifetimes, 1e9))
        raise ValueError("boom")

    supervisor = Supervisor(log, backoff=Backoff(jitter=0), seed=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run, [FunctionService("flaky", flaky)])
        await trio.sleep(500)
        nursery.cancel_scope.cancel()
    # 1 s, 2 s, then a 400 s healthy run resets the backoff: 1 s again, then 2 s
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps == [1.0, 2.0, 401.0, 2.0]


async def test_shutdown_cancels_everything_without_logging_crashes(autojump_clock) -> None:
    log = Recorder()
    supervisor = Supervisor(log, seed=5)
    ticks: list[int] = []
    with trio.move_on_after(5):
        await supervisor.run(
            [FunctionService("a", ticker(ticks)), FunctionService("b", ticker([]))]
        )
    assert log.lines == []
    assert len(ticks) == 4


class Draining:
    """A service that, asked to stop, finishes its work in flight (``drain_s``) and returns."""

    def __init__(self, name: str, drain_s: float | None) -> None:
        self.name = name
        self.drain_s = drain_s
        self._stop = trio.Event()
        self.finished_at: float | None = None

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self._stop.wait()
        if self.drain_s is None:
            await trio.sleep_forever()  # never finishes: the grace period ends it
        await trio.sleep(self.drain_s)
        self.finished_at = trio.current_time()


async def test_shutdown_gives_stoppable_services_their_grace(autojump_clock) -> None:
    log = Recorder()
    ticks: list[int] = []
    quick, slow, stuck = Draining("quick", 1.0), Draining("slow", 4.0), Draining("stuck", None)
    supervisor = Supervisor(log, seed=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            supervisor.run, [quick, slow, stuck, FunctionService("tick", ticker(ticks))]
        )
        started = trio.current_time()
        late = await supervisor.shutdown(10.0)
        assert trio.current_time() - started == 10.0  # the stuck one used the whole grace
        assert late == ["stuck"]
        assert quick.finished_at == started + 1.0 and slow.finished_at == started + 4.0
        assert len(ticks) >= 9  # the other services ran on meanwhile
        assert supervisor.states["quick"].state == "stopped"
        assert supervisor.states["quick"].restarts == 0  # returning on request is no crash
        nursery.cancel_scope.cancel()
    problems = [line for line in log.lines if line[1] == "shutdown"]
    assert problems == [(1, "shutdown", "still running after 10 s, cancelled: stuck")]


async def test_shutdown_does_not_wait_for_a_service_in_its_backoff(autojump_clock) -> None:
    log = Recorder()

    class Crashing(Draining):
        async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            raise OSError("port in use")

    crashing = Crashing("web", 1.0)
    supervisor = Supervisor(log, backoff=Backoff(initial=30, jitter=0), seed=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run, [crashing])
        await trio.sleep(1)  # crashed, waiting 30 s before the next attempt
        started = trio.current_time()
        assert await supervisor.shutdown(10.0) == []
        assert trio.current_time() == started
        await trio.sleep(60)
        assert supervisor.states["web"].crashes == 1  # no attempt after the shutdown began
        nursery.cancel_scope.cancel()
