"""Modbus TCP on trio: ``trio.serve_listeners`` (``serve_tcp``'s loop) accepts, one task per
connection answers.

Rules a client meets (docs/modbus.md):
- Several requests in one segment are all answered, in order; a request split over segments
  is answered once it is complete.
- A bad MBAP header (protocol id not 0, impossible length): the connection is closed, since a
  TCP byte stream cannot be resynchronised.
- Beyond ``max_connections`` a new connection is accepted and closed at once.
- A connection without a complete request for ``idle_timeout_s`` is closed (within 1 s or 1 %
  of the timeout after it), also while its answers wait because it does not read them.
- A client is served ``BATCH`` requests at a time between the other clients' turns, and while
  it does not read its answers it is not read from either (trio's ``send_all`` waits), so a
  flood of requests stays in the client's socket, not in the gateway.
"""

from __future__ import annotations

import logging
import os
import struct
from typing import Any

import trio
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU

from mbusgw.gateway.services.modbus_demand import ImageDemand
from mbusgw.gateway.services.modbus_map import MAX_READ
from mbusgw.gateway.services.modbus_pdu import READ_FUNCTIONS, ModbusStats, Responder

logger = logging.getLogger("mbusgw.modbus")

MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
MBAP_SIZE = 7
READ_REQUEST = struct.Struct(">HHHBBHH")  # the MBAP header, then function, address, count
READ_LENGTH = 6  # the MBAP length of a read request: the unit id and a 5-byte PDU
MAX_PDU = 253
BATCH = 16  # requests answered from one client before the others get a turn
RECEIVE_SIZE = 65536
# an idle connection is closed up to 1 s (at most 1 % of the timeout) after the timeout
IDLE_SLACK = 1.0
IDLE_SLACK_SHARE = 0.01


class BadFrame(Exception):
    """The stream is not Modbus TCP."""


class TcpServer:
    """The listening side: the connection limit, the idle timeout and the counters."""

    def __init__(
        self,
        responder: Responder,
        stats: ModbusStats,
        max_connections: int,
        idle_timeout: float,
        demand: ImageDemand,
    ) -> None:
        self.responder = responder
        self.stats = stats
        self.demand = demand  # held while a connection is open
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.address: tuple[str, int] | None = None

    async def serve(
        self, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        # An OSError (port in use, no permission) goes up as it is, before any nursery wraps
        # it: the supervisor logs it with its reason and tries again after a backoff.
        listeners = await trio.open_tcp_listeners(port, host=host)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._connection, listeners)
            self.address = listeners[0].socket.getsockname()[:2]
            try:
                task_status.started(self.address)
                await trio.sleep_forever()
            finally:
                self.address = None

    async def _connection(self, stream: trio.SocketStream) -> None:
        peer = _peer(stream)
        if self.stats.connections >= self.max_connections:
            self.stats.refused += 1
            logger.warning(
                "Modbus connection refused: %d connections is the limit", self.max_connections
            )
            await trio.aclose_forcefully(stream)
            return
        self.stats.accepted += 1
        self.stats.connections += 1
        idle = self.idle_timeout or float("inf")
        try:
            with self.demand.held(), trio.CancelScope(deadline=trio.current_time() + idle) as scope:
                await self._answer_requests(stream, scope, idle)
            if scope.cancelled_caught:
                self.stats.closed_idle += 1
        except BadFrame:
            self.stats.closed_bad_frame += 1
            logger.warning("Modbus client %s sent a bad MBAP header; closed", peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        finally:
            self.stats.connections -= 1
            await trio.aclose_forcefully(stream)

    async def _answer_requests(
        self, stream: trio.SocketStream, scope: trio.CancelScope, idle: float
    ) -> None:
        # The descriptor is read once trio says it is readable, and answers are written to it
        # at once: the usual exchange (one request, one answer) then costs one trip through
        # the scheduler instead of three. ``send_all`` only takes what the socket did not.
        fd = stream.socket.fileno()
        slack = min(IDLE_SLACK, idle * IDLE_SLACK_SHARE)
        framer = FramerSocket(DecodePDU(is_server=True))
        buffer = bytearray()
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                data = os.read(fd, RECEIVE_SIZE)
            except BlockingIOError:
                continue
            except OSError as error:  # reset by the client
                raise trio.BrokenResourceError from error
            if not data:
                return
            buffer += data
            while True:
                answers, used = self._batch(framer, buffer)
                if not answers:
                    break
                del buffer[:used]
                await _write(stream, fd, b"".join(answers))
                deadline = idle_deadline(scope.deadline, trio.current_time(), idle, slack)
                if deadline != scope.deadline:
                    scope.deadline = deadline
                if len(answers) < BATCH:
                    break
                await trio.lowlevel.checkpoint()  # the other clients' turn

    def _batch(self, framer: FramerSocket, buffer: bytearray) -> tuple[list[bytes], int]:
        """The answers to up to ``BATCH`` complete requests at the start of ``buffer``, and the
        bytes they took. BadFrame for a header that is not Modbus TCP."""
        answers: list[bytes] = []
        used = 0
        while len(answers) < BATCH and len(buffer) - used >= MBAP_SIZE:
            _, protocol, length, _ = MBAP.unpack_from(buffer, used)
            if protocol != 0 or not 2 <= length <= MAX_PDU + 1:
                raise BadFrame
            end = used + 6 + length
            if len(buffer) < end:
                break
            answer = read_fast(self.responder, buffer, used) if length == READ_LENGTH else None
            if answer is None:
                answer = answer_frame(self.responder, framer, bytes(buffer[used:end]))
            answers.append(answer)
            used = end
        return answers, used


def idle_deadline(deadline: float, now: float, idle: float, slack: float) -> float:
    """The idle deadline after a request answered at ``now``: at least ``idle`` and at most
    ``idle + slack`` later. Setting a cancel scope's deadline costs a trip through trio's
    deadline heap, so one that is still far enough is kept."""
    return deadline if deadline - now >= idle else now + idle + slack


def answer_frame(responder: Responder, framer: FramerSocket, frame: bytes) -> bytes:
    """The answer frame to one complete request frame, through pymodbus's framer."""
    _, unit, tid, pdu = framer.decode(frame)
    return framer.encode(responder.answer(unit, pdu), unit, tid)


def read_fast(responder: Responder, buffer: bytes | bytearray, offset: int) -> bytes | None:
    """The answer frame to the common request, a read of function 3 or 4 with a valid count
    in one 12-byte MBAP frame at ``offset``, made without pymodbus (its framer and decoder
    cost more than the rest of the answer); None for any other frame, which ``answer_frame``
    then answers. It answers exactly what ``answer_frame`` would (tests/gateway/
    test_modbus_fast.py checks that for any bytes)."""
    if len(buffer) - offset < READ_REQUEST.size:
        return None
    tid, protocol, length, unit, function, address, count = READ_REQUEST.unpack_from(buffer, offset)
    if protocol or length != READ_LENGTH or function not in READ_FUNCTIONS:
        return None
    if not 1 <= count <= MAX_READ:
        return None
    pdu = responder.read(unit, function, address, count)
    return MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu


async def _write(stream: trio.SocketStream, fd: int, data: bytes) -> None:
    try:
        written = os.write(fd, data)
    except BlockingIOError:
        written = 0
    except OSError as error:  # the client is gone
        raise trio.BrokenResourceError from error
    if written < len(data):  # the socket is full: wait for the client to read
        await stream.send_all(data[written:])


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "(gone)"
    return f"{host}:{port}"
