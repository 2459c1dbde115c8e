"""What every wireless receiver offers: open and configure, receive radio frames, close."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import trio

# Link modes a receiver can listen to (EN 13757-4). "T1+C1" listens to both at once.
LINK_MODES = ("S1", "T1", "C1", "T1+C1")


def parse_link_mode(text: str) -> str:
    """Normalise a link mode name ("c1+t1" → "T1+C1"); ValueError when unknown."""
    mode = text.strip().upper().replace(" ", "")
    if mode == "C1+T1":
        mode = "T1+C1"
    if mode not in LINK_MODES:
        raise ValueError(f"link mode {text!r} is not one of {', '.join(LINK_MODES)}")
    return mode


@dataclass(frozen=True)
class RadioFrame:
    """A telegram as a receiver delivered it: L-field first; ``frame_format`` says whether the
    receiver already removed the block CRCs ("stripped") or left them ("auto": detect)."""

    data: bytes
    receiver: str
    rssi: float | None = None
    frame_format: str = "auto"


class ReceiverError(Exception):
    """The receiver did not answer, refused a setting, or its line closed."""


class Receiver(abc.ABC):
    """One receiver. ``open`` connects and configures it; ``receive`` waits for bytes and returns
    the frames they complete (possibly none); ``aclose`` releases the line. A receiver that is
    not ``restartable`` (a finished stdin) is not reopened when its stream ends."""

    kind = "receiver"
    restartable = True

    def __init__(self, name: str, link_mode: str = "T1+C1") -> None:
        self.name = name
        self.link_mode = parse_link_mode(link_mode)
        self.stream: trio.abc.Stream | None = None

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def receive(self) -> list[RadioFrame]: ...

    async def aclose(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            await stream.aclose()

    async def _read(self) -> bytes:
        if self.stream is None:
            raise ReceiverError(f"receiver {self.name} is not open")
        data = await self.stream.receive_some(4096)
        if not data:
            raise ReceiverError(f"receiver {self.name}: the line was closed")
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, link_mode={self.link_mode!r})"
