"""IMST iM871A (and iM170A) USB receivers: their HCI framing and configuration.

An HCI frame is ``A5 | control<<4 | endpoint | message id | length | payload`` followed by a
4-byte time stamp, an RSSI byte and a CRC-16 when the control bits 0x2, 0x4 and 0x8 say so. The
CRC is CRC-16/X-25 (CCITT polynomial, reflected, initial 0xFFFF, complemented, sent least
significant byte first) over everything after the start byte. A received wireless telegram is
message 0x03 of the radio link endpoint; its payload is the telegram from the C-field on with the
block CRCs removed, so the L-field is rebuilt from the payload length.

``HciCodec`` is sans-I/O: ``feed(bytes)`` then ``events()`` gives ``HciMessage``s and
``HciDiscarded`` runs of bytes that were not a valid frame (the codec resynchronises on the next
start byte). ``Im871aReceiver`` drives a real or simulated stick through a trio stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from mbusgw.gateway.receivers.base import CommandReceiver

SOF = 0xA5

DEVMGMT = 0x01
RADIOLINK = 0x02
RADIOLINKTEST = 0x03
HWTEST = 0x04
# Highest message id per endpoint (HCI 1.6/1.7): anything above is not a frame.
MAX_MESSAGE_ID = {DEVMGMT: 0x27, RADIOLINK: 0x05, RADIOLINKTEST: 0x07, HWTEST: 0x02}

PING_REQ, PING_RSP = 0x01, 0x02
SET_CONFIG_REQ, SET_CONFIG_RSP = 0x03, 0x04
GET_CONFIG_REQ, GET_CONFIG_RSP = 0x05, 0x06
RESET_REQ, RESET_RSP = 0x07, 0x08
GET_DEVICEINFO_REQ, GET_DEVICEINFO_RSP = 0x0F, 0x10
WMBUSMSG_IND = 0x03

CONTROL_TIMESTAMP = 0x2
CONTROL_RSSI = 0x4
CONTROL_CRC = 0x8

# Radio modes of SET_CONFIG (HCI link mode numbers); "T1+C1" needs firmware 1.4 or later.
LINK_MODE_CODES = {"S1": 0x00, "T1": 0x03, "C1": 0x06, "T1+C1": 0x0A}

_X25_TABLE: list[int] = []
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = (_crc >> 1) ^ 0x8408 if _crc & 1 else _crc >> 1
    _X25_TABLE.append(_crc)


def crc16_x25(data: bytes) -> int:
    """CRC-16/X-25 (the HCI frame CRC); ``crc16_x25(b"123456789") == 0x906E``."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _X25_TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def rssi_dbm(raw: int) -> float:
    """The stick's RSSI byte in dBm: the Si1002 radio's curve, about 0.5 dB per step from
    -100 dBm at 45, saturating at 0 dBm."""
    return min(0.0, -100.0 + (raw - 45) * 0.5)


@dataclass(frozen=True)
class HciMessage:
    endpoint: int
    message_id: int
    payload: bytes
    rssi: int | None = None
    timestamp: int | None = None


@dataclass(frozen=True)
class HciDiscarded:
    data: bytes
    reason: str


def build_frame(
    endpoint: int,
    message_id: int,
    payload: bytes = b"",
    *,
    rssi: int | None = None,
    timestamp: int | None = None,
    crc: bool = True,
) -> bytes:
    """One HCI frame (requests use no RSSI or time stamp; a simulated stick adds them)."""
    if len(payload) > 255:
        raise ValueError("an HCI payload has at most 255 bytes")
    control = (
        (CONTROL_TIMESTAMP if timestamp is not None else 0)
        | (CONTROL_RSSI if rssi is not None else 0)
        | (CONTROL_CRC if crc else 0)
    )
    body = bytes((control << 4 | endpoint, message_id, len(payload))) + payload
    if timestamp is not None:
        body += timestamp.to_bytes(4, "little")
    if rssi is not None:
        body += bytes((rssi,))
    if crc:
        body += crc16_x25(body).to_bytes(2, "little")
    return bytes((SOF,)) + body


class HciCodec:
    """Incremental HCI frame parser; the events do not depend on how the bytes were chunked."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipped = bytearray()
        self._skip_reason = ""

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def events(self) -> list[HciMessage | HciDiscarded]:
        out: list[HciMessage | HciDiscarded] = []
        while self._buffer:
            if self._buffer[0] != SOF:
                self._skip(1, "no start byte")
                continue
            verdict = self._check()
            if verdict is None:
                break
            if isinstance(verdict, str):
                self._skip(1, verdict)
                continue
            message, length = verdict
            self._flush_skipped(out)
            out.append(message)
            del self._buffer[:length]
        return out

    def flush(self) -> list[HciMessage | HciDiscarded]:
        """At the end of a stream: whatever is left is discarded."""
        out = self.events()
        if self._buffer:
            self._skip(len(self._buffer), "incomplete frame at the end")
        self._flush_skipped(out)
        return out

    def _skip(self, n: int, reason: str) -> None:
        if not self._skipped:
            self._skip_reason = reason
        self._skipped += self._buffer[:n]
        del self._buffer[:n]

    def _flush_skipped(self, out: list) -> None:
        if self._skipped:
            out.append(HciDiscarded(bytes(self._skipped), self._skip_reason))
            self._skipped.clear()

    def _check(self) -> tuple[HciMessage, int] | str | None:
        buf = self._buffer
        if len(buf) < 4:
            return None
        control, endpoint, message_id, size = buf[1] >> 4, buf[1] & 0x0F, buf[2], buf[3]
        if control & 0x1:
            return "reserved control bit set"
        if endpoint not in MAX_MESSAGE_ID:
            return f"unknown endpoint {endpoint}"
        if not 1 <= message_id <= MAX_MESSAGE_ID[endpoint]:
            return f"unknown message 0x{message_id:02X} for endpoint {endpoint}"
        length = 4 + size
        timestamp_at = length
        length += 4 if control & CONTROL_TIMESTAMP else 0
        rssi_at = length
        length += 1 if control & CONTROL_RSSI else 0
        crc_at = length
        length += 2 if control & CONTROL_CRC else 0
        if len(buf) < length:
            return None
        if control & CONTROL_CRC:
            expected = crc16_x25(bytes(buf[1:crc_at]))
            if expected != int.from_bytes(buf[crc_at:length], "little"):
                return "CRC mismatch"
        message = HciMessage(
            endpoint,
            message_id,
            bytes(buf[4 : 4 + size]),
            buf[rssi_at] if control & CONTROL_RSSI else None,
            int.from_bytes(buf[timestamp_at : timestamp_at + 4], "little")
            if control & CONTROL_TIMESTAMP
            else None,
        )
        return message, length


def set_config_payload(link_mode: str) -> bytes:
    """SET_CONFIG, not stored in flash: the radio mode, and RSSI attached to every telegram."""
    return bytes((0x00, 0x02, LINK_MODE_CODES[link_mode], 0x10 | 0x20, 0x01, 0x00))


def telegram_of(message: HciMessage) -> bytes:
    """The telegram in a WMBUSMSG indication, with its L-field rebuilt."""
    return bytes((len(message.payload),)) + message.payload


class Im871aReceiver(CommandReceiver):
    """An iM871A on a serial line (57600 8N1), or anything that speaks its HCI."""

    kind = "im871a"
    device_info: bytes | None = None

    def _new_codec(self) -> HciCodec:
        return HciCodec()

    async def open(self) -> None:
        await self._connect()
        await self._request(PING_REQ)
        await self._request(RESET_REQ)
        self.device_info = await self._request(GET_DEVICEINFO_REQ)
        self._check_status(await self._request(SET_CONFIG_REQ, set_config_payload(self.link_mode)))

    async def _request(self, message_id: int, payload: bytes = b"") -> bytes:
        """A device management request; its answer is the next message id."""
        return await self._exchange(
            build_frame(DEVMGMT, message_id, payload),
            (DEVMGMT, message_id + 1),
            f"HCI message 0x{message_id:02X}",
        )

    def _event(self, event, wanted) -> bytes | None:
        if isinstance(event, HciDiscarded):
            self.discarded += len(event.data)
        elif (event.endpoint, event.message_id) == (RADIOLINK, WMBUSMSG_IND):
            self._telegram(telegram_of(event), None if event.rssi is None else rssi_dbm(event.rssi))
        elif (event.endpoint, event.message_id) == wanted:
            return event.payload
        return None
