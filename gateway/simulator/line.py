"""A simulated M-Bus line: the wire, its timing, and the meters on it.

The master's bytes take 11 bit times each on the wire; a meter sees a request when its last byte
has arrived and answers ``answer_delay`` later; its answer again takes 11 bit times per byte and
is handed to the master byte by byte at the moment each byte has been received (coalesced into
chunks of at most ``forward_interval`` seconds, as a converter does, but always ending exactly
on a byte). Answers that overlap on the wire are merged as the master's UART would see them
(``wire.merge``). All timing is on the trio clock, so under ``MockClock`` a line at 300 baud
runs in microseconds and exactly.

Line faults: ``echo`` (the converter sends every request back to the master, as some do),
``collide_next`` (a phantom transmitter talks over that many answers), ``noise`` (a byte of
noise after each pause drawn between two bounds, for as long as it is set) and ``flood`` (the
converter sends bytes without a pause, for as long as it is set).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from mbusgw.core.frame import Discarded, FrameParser, ShortFrame, SingleChar
from mbusgw.gateway.simulator.meter import SimMeter
from mbusgw.gateway.simulator.wire import BITS_PER_CHAR, merge
from mbusgw.gateway.transport import check_baudrate


@dataclass
class LineStats:
    """What happened on the wire (all times on the trio clock)."""

    requests: int = 0
    answers: int = 0
    bytes_from_master: int = 0  # every byte that reached the wire, frame or not
    collisions: int = 0
    busy: float = 0.0  # seconds with characters on the wire (either direction)
    first_activity: float = math.nan
    busy_until: float = -math.inf
    # idle wire time before each request, after the line's previous activity
    gaps: deque = field(default_factory=lambda: deque(maxlen=100_000))

    def add_busy(self, start: float, end: float) -> None:
        if math.isnan(self.first_activity):
            self.first_activity = start
        self.busy += max(0.0, end - max(start, self.busy_until))
        self.busy_until = max(self.busy_until, end)

    def occupancy(self) -> float:
        span = self.busy_until - self.first_activity
        return self.busy / span if span > 0 else 0.0

    def as_dict(self) -> dict:
        gaps = sorted(self.gaps)
        return {
            "requests": self.requests,
            "answers": self.answers,
            "collisions": self.collisions,
            "busy_s": self.busy,
            "span_s": max(0.0, self.busy_until - self.first_activity),
            "occupancy": self.occupancy(),
            "gap_p50_s": gaps[len(gaps) // 2] if gaps else None,
            "gap_p99_s": gaps[int(len(gaps) * 0.99)] if gaps else None,
        }


class Uplink:
    """Bytes on their way to the master. Transmissions that overlap form one burst and are
    merged; bytes already delivered are never taken back."""

    def __init__(self) -> None:
        self._settled: deque[tuple[float, int]] = deque()
        self._pending: list[tuple[float, int]] = []
        self._burst: list[tuple[float, bytes]] = []
        self._burst_end = -math.inf
        self._delivered = -math.inf

    def add(self, transmissions: Iterable[tuple[float, bytes]], bit_time: float) -> bool:
        """Schedule transmissions; True if they collide with each other or the current burst."""
        added = list(transmissions)
        start = min(s for s, _ in added)
        if self._burst and start < self._burst_end:
            self._burst += added
        else:
            self._settled.extend(self._pending)
            self._burst = added
            self._delivered = -math.inf
        merged = merge(self._burst, bit_time)
        self._pending = [entry for entry in merged if entry[0] > self._delivered]
        char = BITS_PER_CHAR * bit_time
        self._burst_end = max(s + len(d) * char for s, d in self._burst)
        return len(self._burst) > 1

    @property
    def burst_end(self) -> float:
        """When the last scheduled transmission is over."""
        return self._burst_end

    def chunk_end(self, interval: float) -> float | None:
        """When the next chunk is complete: the last byte due within ``interval`` of the first."""
        entries = list(self._settled) + self._pending if self._settled else self._pending
        if not entries:
            return None
        limit = entries[0][0] + interval
        end = entries[0][0]
        for t, _ in entries:
            if t > limit:
                break
            end = t
        return end

    def take(self, until: float) -> bytes:
        out = bytearray()
        while self._settled and self._settled[0][0] <= until:
            out.append(self._settled.popleft()[1])
        taken = 0
        for t, byte in self._pending:
            if t > until:
                break
            out.append(byte)
            self._delivered = t
            taken += 1
        del self._pending[:taken]
        return bytes(out)


def _frame_length(event: object) -> int:
    if isinstance(event, SingleChar):
        return 1
    if isinstance(event, ShortFrame):
        return 5
    return len(event.raw)  # type: ignore[attr-defined]


class SimLine:
    """``meters`` on one line at ``baud``. ``serve(stream)`` plays the line to one master."""

    def __init__(
        self,
        meters: Iterable[SimMeter],
        baud: int = 2400,
        *,
        echo: bool = False,
        forward_interval: float = 0.010,
        name: str = "sim",
        seed: int = 0,
    ) -> None:
        self.meters = list(meters)
        self.baud = check_baudrate(baud)
        self.echo = echo
        self.collide_next = 0
        self.forward_interval = forward_interval
        self.name = name
        self.stats = LineStats()
        self._rng = random.Random(seed)
        self._epoch: float | None = None
        self._busy_until: dict[int, float] = {}
        self._active: trio.CancelScope | None = None
        self._noise: tuple[float, float] | None = None
        self._flood = False
        self._faults_changed = trio.Event()
        self._reset_wire()

    @property
    def noise(self) -> tuple[float, float] | None:
        """(shortest, longest) pause in seconds between bytes of noise; None: no noise."""
        return self._noise

    @noise.setter
    def noise(self, pauses: tuple[float, float] | None) -> None:
        if pauses is not None and not 0 < pauses[0] <= pauses[1]:
            raise ValueError(f"noise pauses must be 0 < shortest <= longest, not {pauses}")
        self._noise = pauses
        self._faults_changed.set()

    @property
    def flood(self) -> bool:
        """The converter sends bytes back to back, for as long as this is set."""
        return self._flood

    @flood.setter
    def flood(self, on: bool) -> None:
        self._flood = on
        self._faults_changed.set()

    @property
    def bit_time(self) -> float:
        return 1.0 / self.baud

    @property
    def char_time(self) -> float:
        return BITS_PER_CHAR / self.baud

    def _reset_wire(self) -> None:
        self._parser = FrameParser()
        self._down_free = -math.inf
        self._chunks: deque[tuple[int, float]] = deque(maxlen=64)
        self._uplink = Uplink()
        self._wakeup = trio.Event()

    # ------------------------------------------------------------------ the wire, sans I/O

    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the master, handed to the line at ``now``."""
        if self._epoch is None:
            self._epoch = now
        char = self.char_time
        start = max(now, self._down_free)
        end = start + len(data) * char
        # a new frame starts: how long was the wire idle?
        if self._parser.buffered == 0 and self.stats.busy_until > -math.inf:
            self.stats.gaps.append(start - self.stats.busy_until)
        self.stats.add_busy(start, end)
        self.stats.bytes_from_master += len(data)
        self._chunks.append((self._parser.offset, start))
        self._down_free = end
        if self.echo:
            self._uplink.add([(start, bytes(data))], self.bit_time)
        self._parser.feed(data)
        for event in self._parser.events():
            if not isinstance(event, Discarded):
                last = event.offset + _frame_length(event) - 1
                self._dispatch(event, self._time_of(last))
        self._wakeup.set()

    def _time_of(self, offset: int) -> float:
        """When the master's byte at stream ``offset`` has been sent completely."""
        for first, start in reversed(self._chunks):
            if first <= offset:
                return start + (offset - first + 1) * self.char_time
        return self._down_free

    def _dispatch(self, frame: object, end: float) -> None:
        self.stats.requests += 1
        t = end - (self._epoch or 0.0)
        answers: list[tuple[float, bytes]] = []
        for meter in self.meters:
            if meter.baud is not None and meter.baud != self.baud:
                continue  # the meter cannot make sense of characters at this rate
            if end < self._busy_until.get(id(meter), -math.inf):
                continue  # still answering an earlier request (half duplex)
            answer = meter.handle(frame, t)
            if answer is not None:
                start = end + meter.delay(self.bit_time)
                answers.append((start, answer))
                self._busy_until[id(meter)] = start + len(answer) * self.char_time
        if not answers:
            return
        if self.collide_next > 0:
            self.collide_next -= 1
            first_start, first = min(answers)
            noise = bytes(self._rng.randrange(256) for _ in range(max(2, len(first) // 2)))
            answers.append((first_start + 4 * self.bit_time, noise))
        self.stats.answers += 1
        if self._uplink.add(answers, self.bit_time):
            self.stats.collisions += 1
        char = self.char_time
        for start, answer in answers:
            self.stats.add_busy(start, start + len(answer) * char)

    def _send_noise(self, data: bytes, *, queued: bool = False) -> None:
        """``queued``: after what is on its way already (a flood's next chunk: one burst per
        chunk, not an ever longer merge)."""
        now = trio.current_time()
        start = max(now, self._uplink.burst_end) if queued else now
        self._uplink.add([(start, data)], self.bit_time)
        self._wakeup.set()

    async def _make_noise(self) -> None:
        """Noise and flood, while they are set."""
        while True:
            if self._flood:
                count = max(1, round(self.forward_interval / self.char_time))
                self._send_noise(bytes(self._rng.randrange(256) for _ in range(count)), queued=True)
                await trio.sleep(count * self.char_time)
            elif self._noise is not None:
                await trio.sleep(self._rng.uniform(*self._noise))
                if self._noise is not None and not self._flood:
                    self._send_noise(bytes((self._rng.randrange(256),)))
            else:
                self._faults_changed = trio.Event()
                await self._faults_changed.wait()

    # ------------------------------------------------------------------ serving a master

    async def _forward(self, stream: trio.abc.SendStream) -> None:
        while True:
            self._wakeup = trio.Event()
            wake = self._uplink.chunk_end(self.forward_interval)
            if wake is None:
                await self._wakeup.wait()
                continue
            with trio.move_on_at(wake):
                await self._wakeup.wait()
            now = trio.current_time()
            if now >= wake:
                try:
                    await stream.send_all(self._uplink.take(now))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return  # the master went away; the receiving side sees it too

    async def serve(
        self, stream: trio.abc.Stream, *, baud_source: Callable[[], int | None] | None = None
    ) -> None:
        """Play the line to the master at the other end of ``stream`` until it goes away.
        A new master replaces the previous one, as on a converter that takes one client.
        ``baud_source`` reports the rate the master set (a pty's termios)."""
        if self._active is not None:
            self._active.cancel()
        with trio.CancelScope() as scope:
            self._active = scope
            self._reset_wire()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward, stream)
                nursery.start_soon(self._make_noise)
                try:
                    while data := await stream.receive_some(4096):
                        if baud_source is not None:
                            self.baud = baud_source() or self.baud
                        self.receive(data, trio.current_time())
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()
        if self._active is scope:
            self._active = None
