"""One writer of the meter list: while a gateway runs on a data directory, the command line
refuses to change its meters (the gateway would go on from its own copy) and says who owns the
directory; once the gateway stops, the same command works and the next start sees its list."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from test_search_and_meter_commands import mbusgw

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.owner import DataDirBusy, own
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig

LINE = (InterfaceConfig(name="a", kind="simulator", baud=38400, meters=2),)
CSV = "Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress,EnhancedAddress\n"


async def test_the_command_line_is_refused_while_a_gateway_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    listing = tmp_path / "meters.csv"
    listing.write_text(CSV + "Flat 1,,2400,primary,40,\n")
    startup = StartupConfig(data, interfaces=LINE)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            gateway = Gateway(startup, background=False)
            await nursery.start(gateway.run)
            install = await trio.to_thread.run_sync(
                mbusgw,
                "meters",
                "install",
                str(listing),
                "--interface",
                "a",
                "--data-dir",
                str(data),
            )
            remove = await trio.to_thread.run_sync(
                mbusgw, "meters", "remove", "a:p40", "--data-dir", str(data)
            )
            search = await trio.to_thread.run_sync(
                mbusgw, "search", "--mode", "primary", "--data-dir", str(data)
            )
            run = await trio.to_thread.run_sync(mbusgw, "run", "--data-dir", str(data))
            restore = await trio.to_thread.run_sync(
                mbusgw, "restore", str(tmp_path / "any.backup"), "--data-dir", str(data)
            )
            imported = await trio.to_thread.run_sync(
                mbusgw, "config", "import", str(tmp_path / "any.toml"), "--data-dir", str(data)
            )
            second = Gateway(startup, background=False)
            with pytest.raises(DataDirBusy) as busy:
                await second.run()
            gateway.stop()
    assert install.returncode == 1 and remove.returncode == 1
    refusal = install.stderr
    assert "refused, nothing changed: a command-line search is running on" in refusal
    assert f"(pid {os.getpid()})" in refusal and "/api/v1/meters" in refusal
    assert "a command-line search is running on" in str(busy.value)
    assert search.returncode == 1 and "refused: a command-line search is running" in search.stderr
    assert run.returncode == 1 and "one gateway per data directory" in run.stdout
    for command, done in (("restore", restore), ("config import", imported)):
        assert done.returncode == 1
        assert f"mbusgw {command}: refused, nothing changed: a command-line search" in done.stderr

    # stopped: the command line owns the directory while it writes, and the gateway sees it
    done = mbusgw("meters", "install", str(listing), "--interface", "a", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = Gateway(startup, background=False)
            await nursery.start(gateway.run)
            keys = [m.key for m in gateway.meters]
            gateway.stop()
    assert keys == ["a:p40"]
    removed = mbusgw("meters", "remove", "a:p40", "--data-dir", str(data))
    assert removed.returncode == 0 and "removed 1 meter(s); 0 in the list" in removed.stdout


def test_a_crashed_owner_locks_nobody_out(tmp_path: Path) -> None:
    # a lock file left behind, its writer gone: the lock went with the process
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys\nfrom pathlib import Path\nfrom mbusgw.gateway.owner import own\n"
            "with own(Path(sys.argv[1]), 'a gateway'):\n    os._exit(9)\n",
            str(tmp_path),
        ],
        timeout=60,
    )
    assert crashed.returncode == 9 and (tmp_path / "owner.lock").exists()
    with (
        own(tmp_path, "a test"),
        pytest.raises(DataDirBusy, match="a test is running on"),
        own(tmp_path, "another"),
    ):
        pass
