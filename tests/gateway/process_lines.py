"""A tool started by a test (a trap receiver, an MQTT subscriber) whose printed lines the test
waits for."""

from __future__ import annotations

import subprocess
from functools import partial

import trio


class PrintedLines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._arrived = trio.Event()

    async def wait_for(self, text: str, count: int = 1) -> list[str]:
        """The lines that contain ``text``, once there are ``count`` of them."""
        while True:
            found = [line for line in self.lines if text in line]
            if len(found) >= count:
                return found
            self._arrived = trio.Event()
            await self._arrived.wait()

    async def read(self, stream: trio.abc.ReceiveStream) -> None:
        pending = b""
        async for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            self.lines += [line.decode(errors="replace") for line in complete]
            self._arrived.set()


async def start_process(
    nursery: trio.Nursery,
    argv: list[str],
    printed: PrintedLines | None = None,
    env: dict[str, str] | None = None,
) -> trio.Process:
    """``argv`` running in ``nursery``; what it prints goes to ``printed`` (else nowhere)."""
    output = subprocess.PIPE if printed is not None else subprocess.DEVNULL
    errors = subprocess.STDOUT if printed is not None else subprocess.DEVNULL
    run = partial(trio.run_process, argv, stdout=output, stderr=errors, env=env, check=False)
    process = await nursery.start(run)
    if printed is not None:
        nursery.start_soon(printed.read, process.stdout)
    return process
