"""A simulated wired M-Bus meter: the slave side of EN 13757-2/-3, sans I/O.

``SimMeter.handle(frame, t)`` takes one master frame and returns the meter's answer (bytes) or
None. It keeps the state a real meter keeps: its primary address, whether a secondary selection
picked it, the frame count bit of the last REQ_UD2 (a repeated FCB means "your answer was lost:
send it again"), and where it is in a multi-telegram sequence (DIF 0x1F in every telegram but
the last; after the last it starts over with the first, or with ``restarts=False`` sends the
last one again until SND_NKE). Faults are switched on by setting attributes: ``silent`` (never
answers), ``ignore_next`` (ignores that many requests, then answers), ``corrupt_next`` (flips one
bit in that many answers), ``extra_delay`` (a slow meter), ``babble`` (answers every request it
would answer with these bytes instead: a meter whose answers are garbled beyond framing).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mbusgw.core.frame import LongFrame, ShortFrame
from mbusgw.core.slave import (
    ACK,
    ADDRESS_BROADCAST,
    ADDRESS_BROADCAST_REPLY,
    ADDRESS_SELECTED,
    CI_APPLICATION_RESET,
    CI_DATA_SEND,
    CI_SELECTION,
    FCB,
    FCV,
    REQ_UD1,
    REQ_UD2,
    SND_NKE,
    SND_UD,
    SlaveIdentity,
)
from mbusgw.gateway.simulator.telegrams import Evolution, Identity, Template, render

# The link layer's vocabulary is the virtual bus's (core.slave): the same slave side.
SET_PRIMARY = b"\x01\x7a"  # DIF 01, VIF 7A: the primary address, one byte

HEX_DIGITS = "0123456789ABCDE"  # F is the selection wildcard and never part of an ID
MAX_ANSWER_DELAY = 330 / 300 + 0.050  # the latest a compliant meter may answer, at 300 baud


@dataclass
class SimMeter:
    template: Template
    identity: Identity
    primary: int | None = None
    fabrication: str | None = None  # 8 digits, for the enhanced selection
    telegrams: int = 1  # >1: a multi-telegram meter
    baud: int | None = None  # None: answers at any rate (auto-baud)
    answer_delay: float | None = None  # after the request ends; None: 11 bit times
    answer_jitter: float = 0.0  # up to this much later, at random, for each answer
    restarts: bool = True  # after the last telegram: the first again (False: the last again)
    seed: int = 0
    evolution: Evolution = field(default_factory=Evolution)
    # faults on demand
    silent: bool = False
    ignore_next: int = 0
    corrupt_next: int = 0
    extra_delay: float = 0.0
    babble: bytes | None = None
    # link and application state
    selected: bool = False
    access: int = 0
    answers: int = 0
    _last_fcb: bool | None = None
    _next_telegram: int = 0
    _current: bytes | None = None
    _parts: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        ident = self.identity.id
        if len(ident) != 8 or any(c not in HEX_DIGITS for c in ident):
            raise ValueError(f"identification {ident!r}: 8 digits 0-9/A-E (F is the wildcard)")
        if self.primary is not None and not 0 <= self.primary <= 250:
            raise ValueError(f"primary address {self.primary} is outside 0-250")
        if self.answer_delay is not None and not 0 <= self.answer_delay <= MAX_ANSWER_DELAY:
            raise ValueError(
                f"answer delay {self.answer_delay} s is beyond EN 13757-2 (330 bit + 50 ms at "
                "300 baud); a slow meter is made with extra_delay"
            )
        self._parts = self.template.split(self.telegrams)
        self._rng = random.Random(self.seed)
        self.telegrams = len(self._parts)

    @property
    def name(self) -> str:
        return f"{self.identity.id}/{self.identity.manufacturer}"

    def reset_link(self) -> None:
        self._last_fcb = None
        self._next_telegram = 0
        self._current = None

    def addressed_by(self, address: int) -> bool:
        if address == ADDRESS_SELECTED:
            return self.selected
        return address in (ADDRESS_BROADCAST, ADDRESS_BROADCAST_REPLY) or address == self.primary

    def delay(self, bit_time: float) -> float:
        base = 11 * bit_time if self.answer_delay is None else self.answer_delay
        jitter = self._rng.uniform(0, self.answer_jitter) if self.answer_jitter else 0.0
        return base + jitter + self.extra_delay

    def handle(self, frame: object, t: float) -> bytes | None:
        """The answer to one master frame at time ``t``, or None (not addressed, or a fault)."""
        if self.silent:
            return None
        if self.ignore_next > 0 and self._concerns(frame):
            self.ignore_next -= 1  # this frame never reached the meter
            return None
        answer = self._answer(frame, t)
        if answer is None:
            return None
        if self.babble is not None:
            answer = self.babble
        if self.corrupt_next > 0:
            self.corrupt_next -= 1
            damaged = bytearray(answer)
            damaged[len(damaged) // 2] ^= 0x08
            answer = bytes(damaged)
        self.answers += 1
        return answer

    def _concerns(self, frame: object) -> bool:
        if isinstance(frame, LongFrame) and frame.ci == CI_SELECTION:
            return frame.address == ADDRESS_SELECTED and self._selection_matches(frame.data)
        return isinstance(frame, ShortFrame | LongFrame) and self.addressed_by(frame.address)

    def _answer(self, frame: object, t: float) -> bytes | None:
        if isinstance(frame, ShortFrame):
            return self._short(frame, t)
        if isinstance(frame, LongFrame) and frame.control & 0x0F == SND_UD:
            return self._send_user_data(frame)
        return None

    def _short(self, frame: ShortFrame, t: float) -> bytes | None:
        if not self.addressed_by(frame.address):
            return None
        function = frame.control & 0x0F
        if function == SND_NKE:
            self.reset_link()
            if frame.address == ADDRESS_SELECTED:
                self.selected = False
            return None if frame.address == ADDRESS_BROADCAST else ACK
        if frame.address == ADDRESS_BROADCAST:
            return None
        if function == REQ_UD2:
            return self._user_data(frame.control, t)
        if function == REQ_UD1:
            return ACK  # no alarm data
        return None

    def _user_data(self, control: int, t: float) -> bytes:
        fcb = bool(control & FCB)
        counted = bool(control & FCV)
        if counted and self._current is not None and fcb == self._last_fcb:
            return self._current  # the master missed our answer: the same telegram again
        index = self._next_telegram
        if index + 1 < self.telegrams:
            self._next_telegram = index + 1
        elif self.restarts:
            self._next_telegram = 0
        self._last_fcb = fcb if counted else None
        self.access = (self.access + 1) & 0xFF
        self._current = render(
            self.template,
            self._parts[index],
            self.identity,
            address=self.primary if self.primary is not None else 0,
            access=self.access,
            more_follow=index + 1 < self.telegrams,
            t=t,
            evolution=self.evolution,
            fabrication=self.fabrication,
        )
        return self._current

    def _send_user_data(self, frame: LongFrame) -> bytes | None:
        if frame.ci == CI_SELECTION and frame.address == ADDRESS_SELECTED:
            return self._select(frame.data)
        if not self.addressed_by(frame.address):
            return None
        reply = None if frame.address == ADDRESS_BROADCAST else ACK
        if frame.ci == CI_APPLICATION_RESET:
            self.reset_link()
        elif frame.ci == CI_DATA_SEND and frame.data[:2] == SET_PRIMARY and len(frame.data) == 3:
            if frame.data[2] > 250:
                return None
            self.primary = frame.data[2]
        return reply

    def _selection_matches(self, data: bytes) -> bool:
        ident = self.identity
        return SlaveIdentity(
            ident.id, ident.manufacturer, ident.version, ident.medium, self.fabrication
        ).selected_by(data)

    def _select(self, data: bytes) -> bytes | None:
        self.selected = self._selection_matches(data)
        if not self.selected:
            return None
        self.reset_link()
        return ACK
