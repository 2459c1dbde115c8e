"""The terminal end to end: a real gateway (simulated line at 9600 baud, the real store) with
the terminal service on loopback, driven by a Python telnet client over a real socket and by
Debian's ``telnet``; changes made in the terminal are read back through the REST API."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from webclient import Client, body, complete_first_login

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.settings import ConfigError, InterfaceConfig, StartupConfig
from mbusgw.web.app import create_app
from mbusgw.web.terminal.service import TerminalService, terminal_service
from mbusgw.web.terminal.telnet import DO, DONT, IAC, SB, SE, WILL, WONT

sys.path.append(str(Path(__file__).parents[1] / "gateway"))
from gatewaykit import seed_settings  # noqa: E402

PASSWORDS = {"read": "look-only", "configure": "set-things", "administer": "all-power"}
TERMINAL = {
    "enabled": True,
    "host": "127.0.0.1",
    "port": 0,
    **{f"{level}_password": password for level, password in PASSWORDS.items()},
}
PROMPT = re.compile(rb"[^\r\n]*:(read|configure|administer)> ")
QUIET = {
    "modbus": {"enabled": False},
    "reading": {"schedule": "0 0 1 1 *", "read_at_start": False},
}


class TermClient:
    """A telnet client in line mode over a real socket: it sends lines and reads up to a
    prompt; ``raw`` bytes (telnet commands) go out as given."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def connect(cls, port: int) -> TermClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    async def rest(self) -> bytes:
        """Everything until the server closes."""
        while data := await self.stream.receive_some(65536):
            self.buffer += data
        rest, self.buffer = self.buffer, b""
        return rest

    async def send(self, line: str) -> None:
        await self.stream.send_all(line.encode() + b"\r\n")

    async def prompt(self) -> str:
        """Everything up to the next prompt (``name:level> ``), without it."""
        while (found := PROMPT.search(self.buffer)) is None:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        answer, self.buffer = self.buffer[: found.start()], self.buffer[found.end() :]
        return answer.decode()

    async def command(self, line: str) -> str:
        """Send a command; its answer."""
        await self.send(line)
        return await self.prompt()

    async def login(self, password: str) -> str:
        await self.until(b"Password: ")
        await self.send(password)
        return await self.prompt()


class TerminalGateway(Gateway):
    """The gateway with the terminal as its only northbound service, kept at hand."""

    terminal: TerminalService

    def port(self) -> int:
        assert self.terminal.address is not None
        return self.terminal.address[1]


async def start(nursery: trio.Nursery, data_dir: Path, terminal: dict[str, Any]) -> TerminalGateway:
    seed_settings(data_dir, {**QUIET, "terminal": {**TERMINAL, **terminal}})
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=2),)

    def factory(gateway: Any) -> TerminalService:
        gateway.terminal = terminal_service(gateway)
        return gateway.terminal

    gateway = TerminalGateway(StartupConfig(data_dir, interfaces=interfaces), northbound=[factory])
    await nursery.start(gateway.run)
    return gateway


async def log_texts(gateway: TerminalGateway) -> list[str]:
    assert gateway.store is not None and gateway.writer is not None
    await gateway.writer.flush()
    return [entry.text for entry in gateway.store.system_log(limit=1000)]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[TerminalGateway]:
    async with trio.open_nursery() as nursery:
        gateway = await start(nursery, tmp_path, {})
        yield gateway
        gateway.stop()


async def api_admin(gateway: TerminalGateway) -> AsyncIterator[Client]:
    app = create_app(gateway)
    async with app.test_app():
        client = Client(app, None)
        await complete_first_login(client)
        yield client


async def test_each_level_runs_its_commands_and_a_change_shows_in_the_api(
    running: TerminalGateway,
) -> None:
    gateway = running
    with trio.fail_after(60):
        await gateway.read_all()
        client = await TermClient.connect(gateway.port())
        # a telnet client's opening negotiation is refused politely, then line mode
        await client.stream.send_all(bytes((IAC, DO, 1, IAC, WILL, 24, IAC, SB, 24, 0)))
        await client.stream.send_all(b"xterm" + bytes((IAC, SE, IAC, DONT, 3)))
        assert (await client.until(b"Password: ")) == b"mbusgw terminal\r\nPassword: "
        replies = await client.until(bytes((IAC, DONT, 24)))
        assert replies in (bytes((IAC, WONT, 1, IAC, DONT, 24)), bytes((IAC, DONT, 24)))
        await client.send(PASSWORDS["read"])
        assert "level read" in await client.prompt()

        listing = await client.command("help")
        for usage in ("show values [meter]", "set <path> <value>", "restart"):
            assert usage in listing
        keys = [meter.key for meter in gateway.meters]
        meters = await client.command("show meters")
        assert all(key in meters for key in keys) and "active" in meters
        status = await client.command("show status")
        assert "meters: installed=2 active=2" in status and "terminal: running" in status
        values = await client.command("show values")
        assert [line.split(" read ")[0] for line in values.splitlines() if " read " in line] == keys
        one = await client.command(f"show values {keys[0]}")
        assert one.startswith(f"{keys[0]} read ") and keys[1] not in one
        assert "gateway: started with 1 line(s)" in await client.command("show logs 50")
        assert '"device_name": "mbusgw"' in await client.command("get identity")
        assert '"********"' in await client.command("get terminal.read_password")
        assert "needs the configure level" in await client.command("set log.min_level 1")
        assert "needs the configure level" in await client.command(f"read {keys[0]}")

        await client.send("login")
        assert "level configure" in await client.login(PASSWORDS["configure"])
        assert "ok: identity.device_name" in await client.command(
            "set identity.device_name Plant 7"
        )
        refused = await client.command("set reading.schedule not a schedule")
        assert "nothing was changed" in refused and "reading.schedule:" in refused
        assert "unknown setting" in await client.command("set reading.speed 3")
        assert "needs the administer level" in await client.command(
            "set terminal.idle_timeout_s 60"
        )
        read = await client.command(f"read {keys[0]}")
        assert read.startswith(f"{keys[0]} read ")
        refused = await client.command("install Cellar;;9600;primary;400")
        assert refused.startswith("error: the meter list has errors; nothing was installed\r\n")
        assert refused.count("\r\n") == 2 and "PrimaryAddress" in refused
        assert "ok: installed" in await client.command("install Cellar;;9600;primary;40")
        assert len(gateway.meters) == 3
        new = next(m.key for m in gateway.meters if m.key not in keys)
        assert "removed" in await client.command(f"remove {new}")
        assert "error: no report" in await client.command("report nonesuch")
        assert "needs the administer level" in await client.command("restart")

        async for api in api_admin(gateway):
            settings = body(await api.get("/api/v1/settings"))
            assert settings["identity"]["device_name"] == "Plant 7"
            assert settings["reading"]["schedule"] == "0 0 1 1 *"
            # an API change shows in the terminal at once
            response = await api.patch("/api/v1/settings", json={"log": {"min_level": 1}})
            assert response.status_code == 200
        assert await client.command("get log.min_level") == "1\r\n"

        await client.send("login")
        assert "level administer" in await client.login(PASSWORDS["administer"])
        assert "ok" in await client.command("set terminal.idle_timeout_s 60")
        assert gateway.settings.terminal.idle_timeout_s == 60
        await client.send("restart")
        assert b"restarting" in await client.rest()
        assert gateway.after_stop is not None and gateway.after_stop.action == "restart"


async def test_refused_address_wrong_passwords_and_idle_timeout(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = await start(nursery, tmp_path, {"allow": "10.0.0.0/8, 192.168.1.7"})
            port = gateway.port()
            client = await TermClient.connect(port)
            assert await client.rest() == b""  # closed at once, nothing said
            assert "127.0.0.1 refused: not in the allow-list" in await log_texts(gateway)

            with pytest.raises(ConfigError) as refused:
                await gateway.update_settings({"terminal": {"allow": "127.0.0.0/8 10.0.0.0/33"}})
            assert refused.value.errors == {
                "terminal.allow": "'10.0.0.0/33' is not an address or a network"
            }
            await gateway.update_settings({"terminal": {"allow": "127.0.0.0/8"}})
            assert gateway.port() == port  # the listener stays; the list applies at once
            client = await TermClient.connect(port)
            for _ in range(3):
                await client.until(b"Password: ")
                await client.send("guess")
                await client.until(b"wrong password\r\n")
            assert await client.rest() == b"bye\r\n"
            client = await TermClient.connect(port)
            for _ in range(2):
                await client.until(b"Password: ")
                await client.send("guess")
            # five failures from this address: the limiter shared with the web says wait
            assert b"too many failed logins" in await client.rest()
            async for api in api_admin(gateway):
                # the web, asked from the same address, makes that address wait as well
                from_here = {"client": ("127.0.0.1", 40000)}
                response = await api.get("/api/v1/device", scope_base=from_here)
                assert response.status_code == 429
                assert b"too many failed logins" in response.body_bytes
            gateway.login_limiter.succeeded("addr:127.0.0.1", "service:terminal")

            await gateway.update_settings({"terminal": {"idle_timeout_s": 1, "max_sessions": 1}})
            client = await TermClient.connect(port)
            assert "level read" in await client.login(PASSWORDS["read"])
            second = await TermClient.connect(port)  # one session at most: turned away
            assert await second.rest() == b"busy: 1 sessions open; bye\r\n"
            assert b"idle for 1 s; bye" in await client.rest()
            assert any("idle for 1 s; closed" in text for text in await log_texts(gateway))
            gateway.stop()


async def test_debian_telnet_client(running: TerminalGateway) -> None:
    telnet = shutil.which("telnet")
    assert telnet, "Debian's telnet is missing: bash tools/system-deps.sh installs it"
    gateway = running
    with trio.fail_after(60):
        await gateway.read_all()
        process = await trio.lowlevel.open_process(
            [telnet, "127.0.0.1", str(gateway.port())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        output = b""

        async def until(marker: bytes) -> None:
            nonlocal output
            while marker not in output:
                data = await process.stdout.receive_some(65536)  # type: ignore[union-attr]
                assert data, output
                output += data

        await until(b"Password: ")
        await process.stdin.send_all(PASSWORDS["read"].encode() + b"\n")
        await until(b"mbusgw:read> ")
        await process.stdin.send_all(b"show values\n")
        await until(b"\nmbusgw:read> ")
        await process.stdin.send_all(b"quit\n")
        await until(b"bye")
        await process.stdin.aclose()
        await process.wait()
        text = output.decode()
        assert all(f"{meter.key} read " in text for meter in gateway.meters)
