"""The slave side of EN 13757-2/-3 for meters that answer from telegrams already received:
the virtual M-Bus. Bytes in, bytes out; no I/O, no clock.

``VirtualBus`` is one master's view of a set of ``VirtualMeter``s: it keeps that master's
secondary selection and, per meter, the frame count bit and the position in a multi-telegram
reading, exactly as the meters on a line would. ``answer(frame, directory, fresh_since)`` takes
one parsed master frame (``core.frame`` events) and returns the bytes the bus would carry back,
or None for silence. Several meters answering at once give ``COLLISION``: the garbled bytes a
master sees when answers overlap, which is how a secondary scan learns to split its mask.

A meter whose latest reading is older than the validity time (``read_at < fresh_since``) is
still found and selected (it is installed), but its REQ_UD2 answer is ``stale_answer``: an
RSP_UD with its identity, the status byte's "application error" and "temporary error" bits set
(``STATUS_STALE``) and no data records, so that no master takes an old value as current.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mbusgw.core.errors import FrameError
from mbusgw.core.frame import LongFrame, ShortFrame, manufacturer_code, parse_selection

ACK = b"\xe5"
# Overlapping answers as a master's UART sees them: no frame start, no single character.
COLLISION = b"\xa5\xff\x00"

ADDRESS_SELECTED = 0xFD
ADDRESS_BROADCAST_REPLY = 0xFE
ADDRESS_BROADCAST = 0xFF
MAX_PRIMARY = 250

SND_NKE = 0x0
SND_UD = 0x3
REQ_UD1 = 0xA
REQ_UD2 = 0xB
FCB = 0x20
FCV = 0x10
RSP_UD = 0x08
CI_APPLICATION_RESET = 0x50
CI_DATA_SEND = 0x51
CI_SELECTION = 0x52
CI_RESPONSE_LONG = 0x72

MAX_LONG_DATA = 252  # bytes after C, A and CI in a long frame (L = 255 at most)
FIXED_HEADER = (
    12  # CI 0x72: identification, manufacturer, version, medium, access, status, signature
)

# EN 13757-3 status byte: bits 0-1 = 10 "any application error", bit 4 "temporary error".
STATUS_STALE = 0x12


def mask_matches(mask: str, digits: str) -> bool:
    """An 8-digit selection mask (F = any digit) against an identification or fabrication
    number."""
    return len(mask) == len(digits) and all(
        m == "F" or m == d for m, d in zip(mask, digits.upper(), strict=True)
    )


@dataclass(frozen=True, slots=True)
class SlaveIdentity:
    """What a secondary (and enhanced) selection compares: the telegram header's identity and,
    where the meter sends one, its fabrication number (8 digits)."""

    id: str
    manufacturer: str | None = None
    version: int | None = None
    medium: int | None = None
    fabrication: str | None = None

    def selected_by(self, data: bytes) -> bool:
        """Whether the data of a CI 0x52 SND_UD selects this meter (False for bad data)."""
        try:
            mask, manufacturer, version, medium, fabrication = parse_selection(data)
        except FrameError:
            return False
        return (
            mask_matches(mask, self.id)
            and manufacturer in (None, self.manufacturer)
            and version in (None, self.version)
            and medium in (None, self.medium)
            and (
                fabrication is None
                or (self.fabrication is not None and mask_matches(fabrication, self.fabrication))
            )
        )


@dataclass(frozen=True, slots=True)
class VirtualMeter:
    """One installed meter as the virtual bus serves it: its RSP_UD frames as received (a
    multi-telegram reading has several), when they were read (seconds), and its addresses."""

    key: str
    identity: SlaveIdentity
    frames: tuple[bytes, ...] = ()
    read_at: float | None = None
    primary: int | None = None


class MeterDirectory:
    """The meters the virtual bus serves, indexed by primary address."""

    def __init__(self, meters: Iterable[VirtualMeter] = ()) -> None:
        self.meters: dict[str, VirtualMeter] = {meter.key: meter for meter in meters}
        self.by_primary: dict[int, list[VirtualMeter]] = {}
        for meter in self.meters.values():
            if meter.primary is not None:
                self.by_primary.setdefault(meter.primary, []).append(meter)

    def __len__(self) -> int:
        return len(self.meters)


def long_frame(control: int, address: int, ci: int, data: bytes) -> bytes:
    """A long frame (RSP_UD or SND_UD) around ``data``; the caller keeps it under 253 bytes."""
    body = bytes((control, address, ci)) + data
    length = len(body)
    return bytes((0x68, length, length, 0x68)) + body + bytes((sum(body) & 0xFF, 0x16))


def rsp_ud(
    identity: SlaveIdentity, address: int, access: int, status: int, records: bytes
) -> bytes:
    """An RSP_UD with the 12-byte fixed header (CI 0x72) of ``identity`` and ``records``."""
    manufacturer = manufacturer_code(identity.manufacturer) if identity.manufacturer else 0
    header = (
        bytes.fromhex(identity.id)[::-1]
        + manufacturer.to_bytes(2, "little")
        + bytes((identity.version or 0, 0xFF if identity.medium is None else identity.medium))
        + bytes((access & 0xFF, status & 0xFF, 0, 0))
    )
    return long_frame(RSP_UD, address, CI_RESPONSE_LONG, header + records)


def reframe_wireless(telegram: Any, address: int) -> bytes | None:
    """A decoded wireless telegram (``core.wmbus.WirelessTelegram`` with its ``application``)
    as the RSP_UD a wired meter would send: CI 0x72 with the meter's identity, the access number
    and status of its transport header, and its decrypted records. None when the payload holds
    no EN 13757-3 records or does not fit in one long frame."""
    application = getattr(telegram, "application", None)
    if telegram.payload_kind != "records" or application is None:
        return None
    if len(telegram.payload) > MAX_LONG_DATA - FIXED_HEADER:
        return None
    meter = telegram.meter
    identity = SlaveIdentity(meter.id, meter.manufacturer, meter.version, meter.device_type)
    header = application.header
    return rsp_ud(
        identity, address, header.access_number or 0, header.status or 0, telegram.payload
    )


def stale_answer(meter: VirtualMeter, access: int) -> bytes:
    """What a meter without a current reading answers a REQ_UD2 (see the module note)."""
    return rsp_ud(meter.identity, meter.primary or 0, access, STATUS_STALE, b"")


@dataclass(slots=True)
class _Link:
    """One meter's link state towards one master."""

    last_fcb: bool | None = None
    next_telegram: int = 0
    answer: bytes | None = None


@dataclass
class VirtualBus:
    """One master's bus: its selection and each meter's link state (see the module note)."""

    selected: set[str] = field(default_factory=set)
    links: dict[str, _Link] = field(default_factory=dict)
    access: int = 0

    def answer(self, frame: object, directory: MeterDirectory, fresh_since: float) -> bytes | None:
        if isinstance(frame, ShortFrame):
            return self._short(frame, directory, fresh_since)
        if isinstance(frame, LongFrame) and frame.control & 0x0F == SND_UD:
            return self._send_user_data(frame, directory)
        return None  # a single character or a frame no master sends: silence

    def _targets(self, address: int, directory: MeterDirectory) -> Sequence[VirtualMeter]:
        if address == ADDRESS_SELECTED:
            return [directory.meters[key] for key in self.selected if key in directory.meters]
        if address in (ADDRESS_BROADCAST, ADDRESS_BROADCAST_REPLY):
            return list(directory.meters.values())
        return directory.by_primary.get(address, ())

    def _short(
        self, frame: ShortFrame, directory: MeterDirectory, fresh_since: float
    ) -> bytes | None:
        targets = self._targets(frame.address, directory)
        function = frame.control & 0x0F
        if function == SND_NKE:
            for meter in targets:
                self.links.pop(meter.key, None)
            if frame.address == ADDRESS_SELECTED:
                self.selected.clear()
            return ACK if targets and frame.address != ADDRESS_BROADCAST else None
        if not targets or frame.address == ADDRESS_BROADCAST:
            return None
        if len(targets) > 1:
            return COLLISION
        if function == REQ_UD2:
            return self._user_data(targets[0], frame.control, fresh_since)
        if function == REQ_UD1:
            return ACK  # no alarm data
        return None

    def _user_data(self, meter: VirtualMeter, control: int, fresh_since: float) -> bytes:
        link = self.links.setdefault(meter.key, _Link())
        fcb = bool(control & FCB)
        counted = bool(control & FCV)
        if counted and link.answer is not None and fcb == link.last_fcb:
            return link.answer  # the master missed the answer: the same telegram again
        link.last_fcb = fcb if counted else None
        self.access = (self.access + 1) & 0xFF
        if not meter.frames or meter.read_at is None or meter.read_at < fresh_since:
            link.next_telegram = 0
            link.answer = stale_answer(meter, self.access)
            return link.answer
        index = link.next_telegram if link.next_telegram < len(meter.frames) else 0
        link.next_telegram = (index + 1) % len(meter.frames)  # after the last: the first
        link.answer = meter.frames[index]
        return link.answer

    def _send_user_data(self, frame: LongFrame, directory: MeterDirectory) -> bytes | None:
        if frame.address == ADDRESS_SELECTED and frame.ci == CI_SELECTION:
            return self._select(frame.data, directory)
        targets = self._targets(frame.address, directory)
        if not targets or frame.address == ADDRESS_BROADCAST:
            return None
        if len(targets) > 1:
            return COLLISION
        if frame.ci == CI_APPLICATION_RESET:
            self.links.pop(targets[0].key, None)
            return ACK
        # Writing to a meter (a new primary address, data) is refused: its reading is a copy,
        # and the virtual primary address belongs to the gateway's settings.
        return None

    def _select(self, data: bytes, directory: MeterDirectory) -> bytes | None:
        chosen = {
            key for key, meter in directory.meters.items() if meter.identity.selected_by(data)
        }
        # every meter that does not match is deselected, as on a real bus
        self.selected = chosen
        for key in chosen:
            self.links.pop(key, None)
        if not chosen:
            return None
        return ACK if len(chosen) == 1 else COLLISION
