"""A tool started by a test (a trap receiver, an MQTT subscriber) whose printed lines the test
waits for."""

from __future__ import annotations

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
