"""Service ``terminal``: the command line over TCP (docs/terminal.md).

A client outside the allow-list is closed at once and logged. A session first gives a level's
password (the web's login limiting counts the wrong ones, per address, together with the
web's); then it runs commands up to its level until it quits or stays silent for the idle
timeout. The allow-list, passwords and timeout are read afresh for every connection and line,
so a change applies at once; a change of the address or port restarts the service.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import Any

import trio

from mbusgw.gateway.facade import GatewayHandle
from mbusgw.gateway.terminal_settings import LEVELS, TerminalSettings, allowed_networks
from mbusgw.web.terminal.commands import Command, CommandError, Commands, may, parse
from mbusgw.web.terminal.telnet import LineTooLong, TelnetLines, escaped

log = logging.getLogger("mbusgw.terminal")

ORIGIN = "terminal"
LOGIN_TRIES = 3  # wrong passwords in one connection before it is closed
SERVICE_KEY = "service:terminal"  # the limiter's key for the terminal as a whole


def terminal_service(gateway: GatewayHandle) -> TerminalService:
    """The terminal as a northbound service (entry point ``mbusgw.northbound``)."""
    return TerminalService(gateway)


def is_allowed(peer: str, allow: str) -> bool:
    address = ipaddress.ip_address(peer.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed_networks(allow))


def level_for(settings: TerminalSettings, password: str) -> str | None:
    """The highest level whose password this is (every level compared, in constant time)."""
    found = None
    for level in LEVELS:
        expected = settings.password(level)
        if expected and hmac.compare_digest(expected.encode(), password.encode()):
            found = level
    return found


class TerminalService:
    name = "terminal"

    def __init__(self, gateway: GatewayHandle) -> None:
        self.gateway = gateway
        self.address: tuple[str, int] | None = None  # where it listens, once it does
        self.sessions = 0  # open, allowed connections

    def _settings(self) -> TerminalSettings:
        return self.gateway.settings.terminal

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        settings = self._settings()
        if not settings.enabled:
            self.address = None
            task_status.started(None)
            await trio.sleep_forever()
        listeners = await trio.open_tcp_listeners(settings.port, host=settings.host)
        self.address = listeners[0].socket.getsockname()[:2]
        log.info("terminal on %s port %d", *self.address)
        task_status.started(self.address)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        peer = str(stream.socket.getpeername()[0])
        try:
            settings = self._settings()
            if not is_allowed(peer, settings.allow):
                self.gateway.store.log.warning(ORIGIN, f"{peer} refused: not in the allow-list")
                return
            if self.sessions >= settings.max_sessions:
                self.gateway.store.log.warning(ORIGIN, f"{peer} turned away: all sessions busy")
                await stream.send_all(escaped(f"busy: {self.sessions} sessions open; bye\n"))
                return
            self.sessions += 1
            try:
                await Session(self.gateway, stream, peer).run()
            finally:
                self.sessions -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        except Exception as exc:  # one broken session must not end the service
            log.exception("terminal session of %s failed", peer)
            self.gateway.store.log.error(ORIGIN, f"session of {peer} failed: {exc!r}")
        finally:
            await trio.aclose_forcefully(stream)


class Session:
    """One connection: its lines, its level, its commands."""

    def __init__(self, gateway: GatewayHandle, stream: trio.SocketStream, peer: str) -> None:
        self.gw = gateway
        self.stream = stream
        self.peer = peer
        self.telnet = TelnetLines()
        self.pending: list[str] = []
        self.level: str | None = None
        self.commands = Commands(gateway, ORIGIN)

    async def send(self, text: str) -> None:
        await self.stream.send_all(escaped(text))

    async def next_line(self) -> str | None:
        """The next line, or None once the client closed or stayed silent too long."""
        timeout = self.gw.settings.terminal.idle_timeout_s
        with trio.move_on_after(timeout):
            while not self.pending:
                data = await self.stream.receive_some(4096)
                if not data:
                    return None
                try:
                    lines, replies = self.telnet.feed(data)
                except LineTooLong as exc:
                    await self.send(f"error: {exc}\n")
                    return None
                if replies:
                    await self.stream.send_all(replies)
                self.pending += lines
            return self.pending.pop(0)
        self.gw.store.log.info(ORIGIN, f"{self.peer} idle for {timeout} s; closed")
        await self.send(f"\nidle for {timeout} s; bye\n")
        return None

    async def run(self) -> None:
        name = self.gw.settings.identity.device_name
        await self.send(f"{name} terminal\n")
        if not await self.login():
            return
        while True:
            await self.send(f"{name}:{self.level}> ")
            line = await self.next_line()
            if line is None:
                return
            try:
                command = parse(line)
            except CommandError as exc:
                await self.send(f"error: {exc}\n")
                continue
            if command is None:
                continue
            if command.name == "quit":
                await self.send("bye\n")
                return
            if command.name == "login":
                if not await self.login():
                    return
                continue
            await self.execute(command)
            if command.name == "restart" and self.gw.after_stop is not None:
                return

    async def execute(self, command: Command) -> None:
        if not may(self.level, command.level):
            await self.send(
                f"error: {command.name!r} needs the {command.level} level "
                f"(this session: {self.level})\n"
            )
            return
        await self.send(await self.commands.run(command))

    async def login(self) -> bool:
        """Ask for a password until one matches (the level is set) or the tries run out."""
        keys = (f"addr:{self.peer}", SERVICE_KEY)
        limiter = self.gw.login_limiter
        for _ in range(LOGIN_TRIES):
            wait = limiter.wait_s(*keys)
            if wait:
                self.gw.store.log.warning(ORIGIN, f"{self.peer}: too many failed logins")
                await self.send(f"too many failed logins; try again in {wait} s\n")
                return False
            await self.send("Password: ")
            password = await self.next_line()
            if password is None:
                return False
            level = level_for(self.gw.settings.terminal, password)
            if level is not None:
                limiter.succeeded(SERVICE_KEY)
                self.level = level
                self.gw.store.log.info(ORIGIN, f"{self.peer} signed in at level {level}")
                await self.send(f"level {level}; 'help' lists the commands\n")
                return True
            limiter.failed(*keys)
            self.gw.store.log.warning(ORIGIN, f"{self.peer}: wrong password")
            await self.send("wrong password\n")
        await self.send("bye\n")
        return False
