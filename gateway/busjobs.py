"""The jobs a line's driver serves from its queue, one at a time, and the reply each caller waits
on; shared by the trio driver (``bus``) and the native one (``busthread``)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import outcome
import trio

from mbusgw.gateway.busrequests import MeterAddress, ReadSettings
from mbusgw.gateway.meters import AddressingMode


@dataclass(frozen=True)
class Ping:
    address: int


@dataclass(frozen=True)
class Read:
    address: MeterAddress
    settings: ReadSettings
    on_telegram: Callable[[int], None] | None = None
    keep_link: bool = False


Prepare = Callable[[int, Any], tuple[Any, bool | None]]
"""A round's thread-safe part of a reading: ``prepare(k, reading or error)`` returns what
``on_read`` gets and how soon it must reach trio: at once (True), within the hand-back's
interval (False), or not at all (None: trio has nothing to do for it, so ``on_read`` is not
called and nothing is handed back)."""


def read_in_trio(
    on_read: Callable[[int, Any], None], prepare: Prepare | None, k: int, got: Any
) -> None:
    """A round's reading that is done in trio already (the trio driver's, a meter that could
    not be planned): ``on_read(k, got)``, or with ``prepare`` its part and then ``on_read`` if
    trio has anything to do for it."""
    if prepare is None:
        on_read(k, got)
        return
    prepared, urgent = prepare(k, got)
    if urgent is not None:
        on_read(k, prepared)


@dataclass(frozen=True)
class Round:
    """Several reads served one after the other as one request (the native driver's batch);
    ``on_read(k, reading or error)`` as each is done (``on_read(k, prepared)`` with
    ``prepare``)."""

    reads: tuple[Read, ...]
    on_read: Callable[[int, Any], None]
    prepare: Prepare | None = None


@dataclass(frozen=True)
class ProbePrimary:
    address: int


@dataclass(frozen=True)
class ProbeSecondary:
    mask: str
    manufacturer: str | None
    version: int | None
    medium: int | None
    fabrication: str | None


@dataclass(frozen=True)
class ApplicationReset:
    address: MeterAddress
    subcode: int | None
    mode: AddressingMode


@dataclass(frozen=True)
class Transfer:
    frame: bytes
    expect_ack: bool | None


@dataclass(frozen=True)
class SetBaud:
    baud: int


@dataclass(frozen=True)
class Listen:
    seconds: float


@dataclass
class Reply:
    done: trio.Event = field(default_factory=trio.Event)
    result: outcome.Outcome | None = None
    failure: BaseException | None = None  # a callback of the request raised (native driver)


@dataclass
class Hold:
    """Raw access: the line is the holder's until ``None`` comes among its ``ops``."""

    granted: trio.Event = field(default_factory=trio.Event)
    ops: collections.deque[tuple[Any, Reply | None]] = field(default_factory=collections.deque)
    more: trio.Event = field(default_factory=trio.Event)  # an op came (trio driver)


def fail_ops(hold: Hold, error: BaseException) -> None:
    """The line went away under its holder: what it still waits for fails."""
    while hold.ops:
        _, reply = hold.ops.popleft()
        if reply is not None and not reply.done.is_set():
            reply.result = outcome.Error(error)
            reply.done.set()
