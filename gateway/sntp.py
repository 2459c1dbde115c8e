"""An SNTP query (RFC 4330): how far the wall clock is from a time server's, and the service
``sntp-check`` that asks the configured servers on a cron schedule and logs an offset beyond
the maximum accepted drift (docs/time.md). The gateway does not set the clock: the host's time
service does; this tells when it does not."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import trio

from mbusgw.gateway.clock import WallClock, sleep_until_wall
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.parts import Shared
from mbusgw.gateway.supervisor import INFO, WARNING
from mbusgw.gateway.time_settings import sntp_servers

NTP_TO_UNIX = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
CLIENT_REQUEST = bytes([0x23]) + bytes(47)  # leap 0, version 4, mode 3 (client)
TIMEOUT_S = 5.0


class SntpError(Exception):
    """No usable answer; the message says why."""


def _timestamp(data: bytes) -> float:
    seconds, fraction = struct.unpack("!II", data)
    return seconds - NTP_TO_UNIX + fraction / 2**32


async def sntp_offset(
    host: str, port: int, clock: WallClock, timeout_s: float = TIMEOUT_S
) -> float:
    """Seconds to add to the wall clock to get the server's time (positive: it is behind)."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
    except OSError as exc:
        raise SntpError(f"{host}: {exc.strerror or exc}") from None
    family, kind, protocol, _, address = infos[0]
    with trio.socket.socket(family, kind, protocol) as sock:
        await sock.connect(address)
        sent = clock.now().timestamp()
        await sock.send(CLIENT_REQUEST)
        try:
            with trio.fail_after(timeout_s):
                data = await sock.recv(512)
        except trio.TooSlowError:
            raise SntpError(f"{host}:{port}: no answer within {timeout_s:g} s") from None
        received = clock.now().timestamp()
    if len(data) < 48 or data[0] & 0x07 != 4:
        raise SntpError(f"{host}:{port}: not an SNTP server's answer")
    if data[1] == 0:
        raise SntpError(f"{host}:{port}: the server is not synchronised (stratum 0)")
    server_received, server_sent = _timestamp(data[32:40]), _timestamp(data[40:48])
    return ((server_received - sent) + (server_sent - received)) / 2


@dataclass
class SntpStatus:
    last_check: datetime | None = None
    offsets: dict[str, float] = field(default_factory=dict)  # server → seconds
    errors: dict[str, str] = field(default_factory=dict)


class SntpCheck:
    name = "sntp-check"

    def __init__(self, shared: Shared, seed: str = "") -> None:
        self.shared = shared
        self.seed = seed
        self.status = SntpStatus()
        self.timeout_s = TIMEOUT_S  # per server

    async def check(self) -> SntpStatus:
        """Ask every configured server now; log what is off."""
        settings = self.shared.settings().time
        status = SntpStatus(self.shared.clock.now())
        for host, port in sntp_servers(settings.sntp_servers):
            server = f"{host}:{port}"
            try:
                offset = await sntp_offset(host, port, self.shared.clock, self.timeout_s)
            except (SntpError, OSError) as exc:
                status.errors[server] = str(exc)
                self.shared.log(WARNING, self.name, f"SNTP query failed: {exc}")
                continue
            status.offsets[server] = offset
            side = "behind" if offset > 0 else "ahead of"
            text = f"wall clock {abs(offset):.3f} s {side} {server}"
            beyond = abs(offset) > settings.max_drift_s
            self.shared.log(WARNING if beyond else INFO, self.name, text)
        self.status = status
        return status

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        settings = self.shared.settings()
        if not settings.time.sntp_servers.strip():
            task_status.started()
            await trio.sleep_forever()
        schedule = CronSchedule(settings.time.sntp_schedule, seed=self.seed)
        zone = ZoneInfo(settings.timezone)
        clock = self.shared.clock
        task_status.started()
        fire = schedule.next_after(clock.now().astimezone(zone))
        while True:
            await sleep_until_wall(clock, fire)
            await self.check()
            fire = schedule.next_after(max(fire, clock.now().astimezone(zone)))
