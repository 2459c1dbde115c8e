"""net-snmp's own tools against the agent: the IETF base MIBs they need, snmpget/snmpwalk, and
snmptrapd as a receiving manager whose printed notifications the tests read."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from process_lines import PrintedLines, start_process

from mbusgw.gateway.services.snmp.objects import MIB_PATH

ROOT = Path(__file__).resolve().parents[2]
BASE_MIBS = ROOT / ".venv" / "share" / "snmp-mibs"


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    assert found, f"{name} is missing: run `bash tools/system-deps.sh` (Debian snmp, snmptrapd)"
    return found


def mib_dirs() -> str:
    """Our MIB's folder after the IETF base MIBs (fetched once, see tools/snmp-base-mibs.sh)."""
    if not (BASE_MIBS / "SNMPv2-SMI.txt").exists():
        done = subprocess.run(
            ["bash", str(ROOT / "tools" / "snmp-base-mibs.sh"), str(BASE_MIBS)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"the IETF base MIBs could not be fetched: {done.stderr}"
    return f"{BASE_MIBS}:{MIB_PATH.parent}"


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def net_snmp(command: str, *args: str) -> tuple[int, str]:
    """Run snmpget/snmpwalk with our MIB loaded; (exit code, output)."""
    argv = [tool(command), "-M", mib_dirs(), "-m", "MBUSGW-MIB", *args]
    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    return done.returncode, done.stdout.decode() + done.stderr.decode()


class TrapReceiver(PrintedLines):
    """An snmptrapd on a loopback port, printing each notification on one line."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port


@asynccontextmanager
async def snmptrapd(tmp: Path, community: str = "public") -> AsyncIterator[TrapReceiver]:
    port = udp_port()
    conf = tmp / f"snmptrapd-{port}.conf"
    conf.write_text(f"authCommunity log {community}\n")
    receiver = TrapReceiver(port)
    argv = [
        tool("snmptrapd"),
        "-f", "-C", "-c", str(conf), "-Lo", "-n",
        "-M", mib_dirs(), "-m", "MBUSGW-MIB:SNMPv2-MIB",
        f"udp:127.0.0.1:{port}",
    ]  # fmt: skip
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(tmp / f"snmp-{port}")}
    async with trio.open_nursery() as nursery:
        process = await start_process(nursery, argv, receiver, env)
        with trio.fail_after(10):
            await receiver.wait_for("NET-SNMP version")
        try:
            yield receiver
        finally:
            process.terminate()
