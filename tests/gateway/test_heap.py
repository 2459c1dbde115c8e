"""What the gateway builds at start is left out of garbage collections while it runs, and given
back when the run ends."""

from __future__ import annotations

import gc
from pathlib import Path

import trio

from mbusgw.gateway import heap
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.commands.run import serve
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig


def tracked(thing: object) -> bool:
    """``thing`` is among the objects the collector walks (frozen ones are not)."""
    return any(candidate is thing for candidate in gc.get_objects())


def test_settle_freezes_what_lives_and_release_gives_it_back() -> None:
    cycle: list = []
    cycle.append(cycle)
    try:
        assert heap.settle() == gc.get_freeze_count() > 0
        assert not tracked(cycle)
    finally:
        heap.release()
    assert gc.get_freeze_count() == 0
    assert tracked(cycle)


async def test_the_run_command_freezes_the_started_gateway(tmp_path: Path) -> None:
    line = InterfaceConfig(name="a", kind="simulator", baud=9600, meters=2)
    gateway = Gateway(StartupConfig(tmp_path, web_port=0, interfaces=(line,)))
    assert gc.get_freeze_count() == 0
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, gateway)
            with trio.fail_after(30):
                await gateway.ready.wait()
                while not gc.get_freeze_count():
                    await trio.sleep(0.01)
            assert not tracked(gateway.registry)
            gateway.stop()
    finally:
        heap.release()
