"""What the protocol modules share: the delivery interface and the overall timeout.

Each protocol module (smtp, ftp, http) offers a delivery with ``protocol``, ``target`` (where
it goes, without secrets, for logs and status) and ``async deliver(rendered) -> str``: the
receiver's acceptance (SMTP 250 after DATA, FTP 226 transfer complete, HTTP 2xx). Anything
short of that raises ``DeliveryError``, and the report's cursor does not move.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import trio

from mbusgw.gateway.errors import DeliveryError
from mbusgw.gateway.services.reports.templates import Rendered

T = TypeVar("T")


class Delivery(Protocol):
    protocol: str
    target: str

    async def deliver(self, rendered: Rendered) -> str: ...


def timeout_of(seconds: int) -> float | None:
    """A timeout setting in seconds; -1 means none."""
    return None if seconds < 0 else float(seconds)


async def within(timeout: float | None, what: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` under the protocol's overall timeout (``None``: no limit)."""
    try:
        with trio.fail_after(math.inf if timeout is None else timeout):
            return await work()
    except trio.TooSlowError:
        raise DeliveryError(f"{what}: no answer within {timeout:g} s") from None


def explain(error: BaseException) -> str:
    """``Type: message`` of an error, with the first cause that says more when it says nothing
    itself (httpx's ``ConnectError`` wraps the TLS error that tells what happened)."""
    seen = error
    for _ in range(5):
        if str(seen):
            break
        following = seen.__cause__ or seen.__context__
        if following is None:
            break
        seen = following
    text = str(seen)
    name = type(error).__name__
    if seen is not error:
        name += f" ({type(seen).__name__})"
    return f"{name}: {text}" if text else name
