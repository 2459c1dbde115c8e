"""Receiving one answer on a wired M-Bus line, sans I/O: the bytes that came back for a request,
when they came, and when the answer is over.

The exchange feeds each chunk of the line into its ``Reception`` as it arrives (``take``) and
receives until ``done`` (a complete, clean answer of the kind asked for) or until ``deadline``
passes (silence: no answer, or the end of an answer that is not clean).
"""

from __future__ import annotations

import math

from mbusgw.core.frame import Discarded, FrameParser, LongFrame, ShortFrame, SingleChar

LONG_START = 0x68
LONG_OVERHEAD = 6  # 68 L L 68 ... CS 16 around the L bytes of a long frame
RSP_UD_FUNCTION = 0x08  # C field of a slave's user data, without the ACD/DFC bits


class EchoCanceller:
    """Drops the echo of the request that some converters send back before the answer. Bytes
    are held while they match the request; on a mismatch they were an answer after all and are
    given back."""

    def __init__(self, request: bytes) -> None:
        self._expected = request
        self._matched = 0
        self._active = True
        self.seen = False

    def filter(self, data: bytes) -> bytes:
        if not self._active:
            return data
        expected = self._expected
        i = 0
        while i < len(data) and self._matched < len(expected):
            if data[i] != expected[self._matched]:
                self._active = False
                return expected[: self._matched] + data[i:]
            i += 1
            self._matched += 1
        if self._matched == len(expected):
            self._active = False
            self.seen = True
            return data[i:]
        return b""


def expected_kind(event: object, expect_ack: bool | None) -> bool:
    """``expect_ack``: True for E5, False for RSP_UD, None for any valid frame."""
    if expect_ack is None:
        return not isinstance(event, Discarded)
    if expect_ack:
        return isinstance(event, SingleChar)
    return isinstance(event, LongFrame) and event.control & 0x0F == RSP_UD_FUNCTION


def raw_frame(event: object) -> bytes:
    if isinstance(event, SingleChar):
        return b"\xe5"
    if isinstance(event, ShortFrame):
        control, address = event.control, event.address
        return bytes((0x10, control, address, (control + address) & 0xFF, 0x16))
    return event.raw  # type: ignore[attr-defined]


class Reception:
    """The answer to one request, as it comes in. Times on the trio clock.

    ``window_end``: silence until then means "no answer". ``char``: one character's time;
    ``char_gap``: the silence that ends an answer. ``strict`` listens until the window has
    closed even after a clean answer (a scan must notice a second, late meter).
    """

    __slots__ = (
        "_echo",
        "_expect_ack",
        "_head",
        "_parser",
        "char",
        "char_gap",
        "count",
        "deadline",
        "done",
        "error",
        "events",
        "first_at",
        "garbled",
        "last_at",
        "pace_until",
        "remaining",
        "strict",
        "window_end",
    )

    def __init__(
        self,
        request: bytes,
        window_end: float,
        *,
        char: float,
        char_gap: float,
        expect_ack: bool | None,
        strict: bool,
    ) -> None:
        self._echo = EchoCanceller(request)
        self._parser = FrameParser()
        self._expect_ack = expect_ack
        self._head = b""  # the first two bytes: a long frame's length is in the second
        self.char = char
        self.char_gap = char_gap
        self.strict = strict
        self.window_end = window_end
        self.deadline = window_end
        self.events: list = []
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.garbled = False
        self.count = 0  # bytes received (after echo removal)
        self.remaining = 0  # bytes still missing from the long frame being received
        self.pace_until = -math.inf  # when that long frame can be complete
        self.done = False  # a clean answer is complete (or the line failed)
        self.error: BaseException | None = None

    @property
    def echo_seen(self) -> bool:
        return self._echo.seen

    @property
    def buffered(self) -> int:
        return self._parser.buffered

    def take(self, at: float, data: bytes) -> bool:
        """One chunk from the line, received at ``at``. True while the rest of a long frame is
        still on the wire: ``remaining`` bytes, complete at ``pace_until``."""
        data = self._echo.filter(data)
        if not data:
            return False
        if self.first_at is None:
            self.first_at = at
        self.last_at = at
        parser = self._parser
        parser.feed(data)
        self.count += len(data)
        if len(self._head) < 2:
            self._pace(at, data)
        elif self.remaining:
            self.remaining = max(0, self.remaining - len(data))
        new = parser.events()
        events = self.events
        events += new
        if len(events) > 1 or any(isinstance(e, Discarded) for e in new):
            self.garbled = True
        elif (
            not self.garbled
            and events
            and parser.buffered == 0
            and not self.strict
            and expected_kind(events[0], self._expect_ack)
        ):
            self.done = True
            return False
        # wait for the rest; once garbled (or listening strictly) also for late meters
        deadline = max(at, self.pace_until) + self.char_gap
        if self.garbled or self.strict:
            deadline = max(deadline, self.window_end)
        self.deadline = deadline
        return self.remaining > 0 and self.pace_until > at

    def _pace(self, at: float, data: bytes) -> None:
        """Once the length of a long frame is known: when it can be complete, and how many of
        its bytes are still on the wire."""
        self._head += data[: 2 - len(self._head)]
        if len(self._head) < 2 or self._head[0] != LONG_START:
            return
        self.remaining = max(0, self._head[1] + LONG_OVERHEAD - self.count)
        self.pace_until = at + self.remaining * self.char

    def fail(self, error: BaseException) -> None:
        """The line broke while receiving."""
        self.error = error
        self.done = True

    def finish(self) -> None:
        """Silence until the deadline: whatever is incomplete now is garbage."""
        self.events += self._parser.flush()
        if any(isinstance(e, Discarded) for e in self.events):
            self.garbled = True
