"""Notifications to the configured receivers: a v2c TRAP is sent once; an INFORM is sent again
after each ``timeout_s`` without an acknowledgement, ``retries`` times at most. Every receiver
is served on its own, so a silent one delays no other."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from mbusgw.gateway.services.snmp.objects import Oid, Value
from mbusgw.gateway.snmp_settings import SnmpReceiver

LogLine = Callable[[str], None]


@dataclass
class ReceiverStatus:
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "failed": self.failed,
            "last_error": self.last_error,
        }


async def send_to(
    name: str,
    receiver: SnmpReceiver,
    trap_oid: Oid,
    uptime_ticks: int,
    values: Sequence[tuple[Oid, Value]],
    status: ReceiverStatus,
    warn: LogLine,
) -> bool:
    """Send one notification to one receiver; True when it went out (and, for an INFORM, was
    acknowledged)."""
    # pysnmp is loaded with the first notification, not with every gateway
    from mbusgw.gateway.services.snmp import codec

    request_id, message = codec.notification(
        receiver.community, trap_oid, uptime_ticks, values, inform=receiver.inform
    )
    try:
        infos = await trio.socket.getaddrinfo(
            receiver.host, receiver.port, type=trio.socket.SOCK_DGRAM
        )
    except OSError as exc:
        return _failed(name, status, f"cannot resolve {receiver.host}: {exc}", warn)
    family, kind, proto, _, address = infos[0]
    with trio.socket.socket(family, kind, proto) as sock:
        attempts = receiver.retries + 1 if receiver.inform else 1
        for _ in range(attempts):
            try:
                await sock.sendto(message, address)
            except OSError as exc:
                return _failed(name, status, f"cannot send: {exc}", warn)
            status.sent += 1
            if not receiver.inform:
                return True
            with trio.move_on_after(receiver.timeout_s):
                while True:
                    try:
                        reply = await sock.recv(65_536)
                    except OSError:
                        break  # e.g. port unreachable: wait out the timeout, then retry
                    if codec.acknowledged(reply, request_id):
                        status.acknowledged += 1
                        status.last_error = None
                        return True
    return _failed(name, status, f"no acknowledgement after {attempts} attempt(s)", warn)


def _failed(name: str, status: ReceiverStatus, error: str, warn: LogLine) -> bool:
    status.failed += 1
    status.last_error = error
    warn(f"notification to receiver {name} failed: {error}")
    return False
