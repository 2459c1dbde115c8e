"""Whether anyone can read the Modbus register image now.

Keeping the image current costs trio's thread more than anything else the gateway does per
reading (turning the records into values and encoding the block), and a gateway whose
Modbus service nobody uses would pay it for every reading. So the image is kept only while a
client can ask: a TCP connection is open, or an RTU port is served (a serial master may ask at
any time). In between, a request that comes encodes what it asks for, as a map without a
keeper does, while the keeper brings the image up to date again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


class ImageDemand:
    """Counts who can read the image now; tasks wait for it to be wanted or not."""

    def __init__(self) -> None:
        self._holders = 0
        self._changed = trio.Event()

    @property
    def wanted(self) -> bool:
        return self._holders > 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """While a client can ask (a connection, a served RTU port)."""
        self._holders += 1
        if self._holders == 1:
            self._wake()
        try:
            yield
        finally:
            self._holders -= 1
            if not self._holders:
                self._wake()

    async def wait(self, wanted: bool) -> None:
        """Return once the image is wanted (``wanted``) or no longer wanted."""
        while self.wanted != wanted:
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
