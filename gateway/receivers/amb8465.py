"""Amber / Würth Elektronik AMB8465 (and AMB8665) USB receivers: their command framing.

A command is ``FF | command | length | payload | checksum``, the checksum being the XOR of every
byte before it; a confirmation carries the command with bit 0x80 set. Received telegrams
arrive either as a data indication command (``FF 03 …`` or ``FF 83 …``, when the module's
command output is on; the payload starts at the C-field) or transparently, starting with their
L-field. With the module's RSSI output on, one RSSI byte follows the telegram in both forms
(dBm = signed byte / 2 - 74). Telegrams come with their block CRCs removed.

``AmberCodec`` is sans-I/O like ``HciCodec``; ``Amb8465Receiver`` drives the module (9600 8N1).
"""

from __future__ import annotations

from dataclasses import dataclass

from mbusgw.gateway.receivers.base import CommandReceiver

START = 0xFF
CONFIRM = 0x80
DATA_IND = 0x03
SET_MODE = 0x04
RESET = 0x05
SET = 0x09
GET = 0x0A
SERIALNO = 0x0B
RSSI = 0x0D
COMMANDS = (
    0x00,
    0x01,
    0x02,
    DATA_IND,
    SET_MODE,
    RESET,
    0x06,
    SET,
    GET,
    SERIALNO,
    0x0C,
    RSSI,
    0x10,
    0x11,
    0x30,
    0x31,
    0x50,
    0x51,
    0x52,
)

# Module parameter memory (non-volatile): command output, and RSSI attached to telegrams.
PARAM_CMD_OUT = 0x05
PARAM_RSSI = 0x45

# Collector modes of SET_MODE: receive S1/S1-m, T1, C1, or C1 and T1 together.
LINK_MODE_CODES = {"S1": 0x03, "T1": 0x08, "C1": 0x0E, "T1+C1": 0x09}


def checksum(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def command(cmd: int, payload: bytes = b"") -> bytes:
    body = bytes((START, cmd, len(payload))) + payload
    return body + bytes((checksum(body),))


def rssi_dbm(raw: int) -> float:
    signed = raw - 256 if raw >= 128 else raw
    return signed / 2 - 74


@dataclass(frozen=True)
class AmberCommand:
    command: int
    payload: bytes
    rssi: int | None = None


@dataclass(frozen=True)
class AmberTelegram:
    data: bytes
    rssi: int | None = None


@dataclass(frozen=True)
class AmberDiscarded:
    data: bytes
    reason: str


class AmberCodec:
    """Incremental parser of the module's output. ``rssi`` says whether RSSI bytes follow
    telegrams (a module setting that the receiver reads when it opens)."""

    def __init__(self, rssi: bool = True) -> None:
        self.rssi = rssi
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def events(self) -> list[AmberCommand | AmberTelegram | AmberDiscarded]:
        out: list[AmberCommand | AmberTelegram | AmberDiscarded] = []
        while self._buffer:
            event = self._command() if self._buffer[0] == START else self._transparent()
            if event is None:
                break
            out.append(event)
        return out

    def flush(self) -> list[AmberCommand | AmberTelegram | AmberDiscarded]:
        out = self.events()
        if self._buffer:
            out.append(AmberDiscarded(bytes(self._buffer), "incomplete frame at the end"))
            self._buffer.clear()
        return out

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _command(self):
        buf = self._buffer
        if len(buf) < 3:
            return None
        cmd = buf[1]
        if cmd & ~CONFIRM not in COMMANDS:
            return AmberDiscarded(self._take(1), f"unknown command 0x{cmd:02X}")
        is_data = cmd & ~CONFIRM == DATA_IND
        extra = 1 if self.rssi and is_data else 0
        length = 3 + buf[2] + extra + 1
        if len(buf) < length:
            return None
        if checksum(bytes(buf[: length - 1])) != buf[length - 1]:
            return AmberDiscarded(self._take(1), "checksum mismatch")
        frame = self._take(length)
        payload = frame[3 : 3 + frame[2]]
        rssi = frame[length - 2] if extra else None
        if is_data:  # the indication leaves out the L-field: rebuild it
            return AmberTelegram(bytes((len(payload),)) + payload, rssi)
        return AmberCommand(cmd, payload)

    def _transparent(self):
        buf = self._buffer
        if buf[0] < 9:
            return AmberDiscarded(self._take(1), "L-field too small for a telegram")
        length = 1 + buf[0] + (1 if self.rssi else 0)
        if len(buf) < length:
            return None
        frame = self._take(length)
        if self.rssi:
            return AmberTelegram(frame[:-1], frame[-1])
        return AmberTelegram(frame)


class Amb8465Receiver(CommandReceiver):
    """An AMB8465 on a serial line. When ``enable_rssi`` is set and the module's RSSI output is
    off, it is switched on (a flash parameter) and the module is reset."""

    kind = "amb8465"
    serial_number: bytes | None = None

    def __init__(self, *args, enable_rssi: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._enable_rssi = enable_rssi

    def _new_codec(self) -> AmberCodec:
        return AmberCodec()

    async def open(self) -> None:
        await self._connect()
        await self._request(RESET)
        self.serial_number = await self._request(SERIALNO)
        settings = await self._request(GET, bytes((PARAM_RSSI, 1)))
        rssi_on = settings[-1:] == b"\x01"
        if self._enable_rssi and not rssi_on:
            await self._request(SET, bytes((PARAM_RSSI, 1, 1)))
            await self._request(RESET)
            rssi_on = True
        self._codec.rssi = rssi_on
        self._check_status(await self._request(SET_MODE, bytes((LINK_MODE_CODES[self.link_mode],))))

    async def _request(self, cmd: int, payload: bytes = b"") -> bytes:
        return await self._exchange(command(cmd, payload), cmd | CONFIRM, f"command 0x{cmd:02X}")

    def _event(self, event, wanted) -> bytes | None:
        if isinstance(event, AmberDiscarded):
            self.discarded += len(event.data)
        elif isinstance(event, AmberTelegram):
            self._telegram(event.data, None if event.rssi is None else rssi_dbm(event.rssi))
        elif event.command == wanted:
            return event.payload
        return None
