"""What every wireless receiver offers: open and configure, receive radio frames, close."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

StreamFactory = Callable[[], Awaitable[trio.abc.Stream]]

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


class CommandReceiver(Receiver):
    """A USB stick that answers commands and sends telegrams on the same line. Subclasses give
    the codec, and ``_event`` sorts one parsed event: a telegram (queued), a discarded run of
    bytes (counted), or an answer (returned when it is the one awaited)."""

    def __init__(
        self,
        name: str,
        open_stream: StreamFactory,
        link_mode: str = "T1+C1",
        *,
        response_timeout: float = 2.0,
    ) -> None:
        super().__init__(name, link_mode)
        self._open_stream = open_stream
        self._response_timeout = response_timeout
        self._codec = self._new_codec()
        self._pending: list[RadioFrame] = []
        self.discarded = 0

    @abc.abstractmethod
    def _new_codec(self) -> Any: ...

    @abc.abstractmethod
    def _event(self, event: Any, wanted: Any) -> bytes | None: ...

    async def _connect(self) -> None:
        self._codec = self._new_codec()
        self._pending = []
        self.stream = await self._open_stream()

    async def receive(self) -> list[RadioFrame]:
        if not self._pending:
            self._codec.feed(await self._read())
            self._sort(self._codec.events(), None)
        frames, self._pending = self._pending, []
        return frames

    async def _exchange(self, request: bytes, wanted: Any, what: str) -> bytes:
        """Send a request and wait for its answer; telegrams that arrive meanwhile are kept."""
        assert self.stream is not None
        await self.stream.send_all(request)
        with trio.move_on_after(self._response_timeout):
            while True:
                self._codec.feed(await self._read())
                found = self._sort(self._codec.events(), wanted)
                if found is not None:
                    return found
        raise ReceiverError(f"{self.name}: no answer to {what}")

    def _sort(self, events: list, wanted: Any) -> bytes | None:
        found = None
        for event in events:
            answer = self._event(event, wanted)
            if answer is not None:
                found = answer
        return found

    def _telegram(self, data: bytes, rssi: float | None) -> None:
        self._pending.append(RadioFrame(data, self.name, rssi, "stripped"))

    def _check_status(self, status: bytes) -> None:
        if status[:1] not in (b"", b"\x00"):
            raise ReceiverError(f"{self.name} refused link mode {self.link_mode}")
