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
