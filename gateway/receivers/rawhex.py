"""Telegrams as text, one hex telegram per line, over TCP or stdin (software radios).

A line is either plain hex (spaces, a ``0x`` prefix and a trailing ``;RSSI`` in dBm allowed) or
the semicolon format of rtl-wmbus style decoders::

    MODE;CRC_OK;3OF6_OK;TIMESTAMP;PACKET_RSSI;CURRENT_RSSI;LINK_LAYER_IDENT_NO;0xTELEGRAM

whose telegram has its CRCs removed; a line with CRC_OK 0 is reported as damaged. The RSSI
fields of that format are the decoder's raw levels, not dBm, and are left out.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from mbusgw.gateway.receivers.base import (
    LINK_MODES,
    RadioFrame,
    Receiver,
    ReceiverError,
    StreamFactory,
)

HEX = set(string.hexdigits)
MAX_LINE = 2048


@dataclass(frozen=True)
class HexTelegram:
    data: bytes
    rssi: float | None = None
    frame_format: str = "auto"
    link_mode: str | None = None


@dataclass(frozen=True)
class HexDiscarded:
    line: bytes
    reason: str


def _hex(text: str) -> bytes:
    compact = "".join(text.split())
    compact = compact[2:] if compact[:2].lower() == "0x" else compact
    if not compact or len(compact) % 2 or not set(compact) <= HEX:
        raise ValueError("not an even number of hex digits")
    return bytes.fromhex(compact)


def parse_line(raw: bytes) -> HexTelegram | HexDiscarded | None:
    """One line; None for blank lines and ``#`` comments."""
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return HexDiscarded(raw, "not ASCII text")
    if not text or text.startswith("#"):
        return None
    fields = text.split(";")
    try:
        if len(fields) >= 8:
            mode = fields[0].strip().upper()
            if fields[1].strip() == "0":
                return HexDiscarded(raw, "the radio reported a CRC error")
            return HexTelegram(
                _hex(fields[-1]), None, "stripped", mode if mode in LINK_MODES else None
            )
        if len(fields) == 2:
            return HexTelegram(_hex(fields[0]), float(fields[1]))
        if len(fields) == 1:
            return HexTelegram(_hex(fields[0]))
    except ValueError as error:
        return HexDiscarded(raw, str(error))
    return HexDiscarded(raw, f"{len(fields)} fields is neither plain hex nor rtl-wmbus format")


class HexLineCodec:
    """Splits a byte stream into lines (LF or CRLF) and parses them."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overlong = False  # inside a line that was already reported as too long

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def events(self) -> list[HexTelegram | HexDiscarded]:
        out: list[HexTelegram | HexDiscarded] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    if not self._overlong:
                        out.append(HexDiscarded(bytes(self._buffer[:MAX_LINE]), "line too long"))
                    self._overlong = True
                    self._buffer.clear()
                return out
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._overlong:
                self._overlong = False
                continue
            if len(line) > MAX_LINE:
                out.append(HexDiscarded(line[:MAX_LINE], "line too long"))
                continue
            event = parse_line(line.rstrip(b"\r"))
            if event is not None:
                out.append(event)

    def flush(self) -> list[HexTelegram | HexDiscarded]:
        if self._buffer and not self._buffer.endswith(b"\n"):
            self._buffer += b"\n"
        return self.events()


class RawHexReceiver(Receiver):
    """Hex lines from a stream; ``restartable`` is False for stdin (its end is the end)."""

    kind = "rawhex"

    def __init__(self, name: str, open_stream: StreamFactory, *, restartable: bool = True) -> None:
        super().__init__(name, "T1+C1")
        self._open_stream = open_stream
        self.restartable = restartable
        self._codec = HexLineCodec()
        self.discarded = 0
        self.last_discarded: HexDiscarded | None = None

    async def open(self) -> None:
        self._codec = HexLineCodec()
        self.stream = await self._open_stream()

    async def receive(self) -> list[RadioFrame]:
        try:
            self._codec.feed(await self._read())
            events = self._codec.events()
        except ReceiverError:
            events = self._codec.flush()
            if not events:
                raise
        frames = []
        for event in events:
            if isinstance(event, HexDiscarded):
                self.discarded += 1
                self.last_discarded = event
            else:
                frames.append(RadioFrame(event.data, self.name, event.rssi, event.frame_format))
        return frames
