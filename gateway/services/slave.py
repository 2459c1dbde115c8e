"""What the services for existing M-Bus masters share (docs/slave.md): their counters, and a
session's bookkeeping: the connection limit, the system log lines for opening and closing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

import trio

from mbusgw.gateway.errors import describe
from mbusgw.gateway.facade import INFO, WARNING

Log = Callable[[int, str], None]
"""``log(level, text)``: the service's lines in the system log."""

Status = Callable[[], dict[str, Any]]


class StatusBoard(Protocol):
    """Where a running gateway keeps its northbound services' status (``GatewayHandle``)."""

    service_status: dict[str, Status]


class Reporting(Protocol):
    name: str

    def status(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=Reporting)


def registered(host: StatusBoard, service: S) -> S:
    """``service``, with its status shown by the gateway (REST API, web page)."""
    host.service_status[service.name] = service.status
    return service


@dataclass
class SlaveCounters:
    """Per service, since the gateway started."""

    sessions_open: int = 0
    sessions: int = 0
    sessions_refused: int = 0
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    refused_frames: int = 0  # bytes that formed no frame, and frames left incomplete
    timeouts: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def run_session(
    stream: trio.abc.Stream,
    peer: str,
    counters: SlaveCounters,
    limit: int,
    log: Log,
    serve: Callable[[trio.abc.Stream], Awaitable[str]],
) -> None:
    """Serve one master connection with ``serve`` (which returns why it ended), or refuse it
    when ``limit`` masters are connected; the connection is closed either way."""
    async with stream:
        if counters.sessions_open >= limit:
            counters.sessions_refused += 1
            log(WARNING, f"master {peer} refused: {counters.sessions_open} connected")
            return
        await session(stream, peer, counters, log, serve)


async def session(
    stream: trio.abc.Stream,
    peer: str,
    counters: SlaveCounters,
    log: Log,
    serve: Callable[[trio.abc.Stream], Awaitable[str]],
) -> None:
    """One session, counted and logged as it opens and closes; the stream stays open."""
    counters.sessions_open += 1
    counters.sessions += 1
    log(INFO, f"session with master {peer} opened")
    why = "ended"
    try:
        why = await serve(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        why = "connection lost"
    except Exception as exc:  # one master's trouble (a line that is down) ends its session only
        why = f"failed: {describe(exc)}"
    finally:
        counters.sessions_open -= 1
        log(INFO, f"session with master {peer} closed: {why}")


def peer_name(stream: trio.abc.Stream) -> str:
    """``host:port`` of a TCP master, else what the stream is (a serial port's device)."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        return str(getattr(stream, "name", "serial port"))
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"
