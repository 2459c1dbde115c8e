"""A full disk: refused plainly before LMDB maps anything, and a cycle caught by it is held and
stored once there is room again. Each case runs on a small tmpfs of its own, mounted in a
private mount namespace (``unshare``; as a user, in a user namespace too), so nothing of this
machine's file systems is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from disk_full_rig import METERS

from mbusgw.gateway.errors import DISK_FULL_STATUS
from mbusgw.gateway.store import Store, store_path
from mbusgw.gateway.store.env import MiB

HERE = Path(__file__).parent
MBUSGW = f"{sys.executable} -m mbusgw.gateway.cli"


def on_small_filesystem(mount: Path, size: str, script: str) -> subprocess.CompletedProcess:
    """Run the shell ``script`` in ``mount`` with a tmpfs of ``size`` mounted there."""
    mount.mkdir()
    private = ["unshare", "--mount"]
    if os.geteuid() != 0:
        private = ["unshare", "--user", "--map-root-user", "--mount"]
    shell = f'mount -t tmpfs -o size={size} tmpfs "$1" && cd "$1" && {script}'
    return subprocess.run(
        [*private, "sh", "-c", shell, "sh", str(mount)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def rig(tmp_path: Path, size: str, case: str) -> dict:
    """What ``disk_full_rig.py`` reports of ``case`` on a tmpfs of ``size``."""
    result = on_small_filesystem(
        tmp_path / "fs", size, f"{sys.executable} {HERE / 'disk_full_rig.py'} . {case}"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def fill_it() -> str:
    return "dd if=/dev/zero of=filler bs=4k 2>/dev/null; "


def test_run_and_config_import_on_a_full_disk_say_so_and_exit_with_the_documented_status(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    Store.open(store_path(source)).close()
    config = tmp_path / "settings.toml"
    exported = subprocess.run(
        [*MBUSGW.split(), "config", "export", str(config), "--data-dir", str(source)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    result = on_small_filesystem(
        tmp_path / "fs",
        "2m",
        fill_it()
        + f"{MBUSGW} run --data-dir var; echo run=$?; "
        + f"{MBUSGW} config import {config} --data-dir var2; echo import=$?; "
        + "test -e var2/store.mdb && echo created; true",
    )
    assert f"run={DISK_FULL_STATUS}" in result.stdout, result
    assert f"import={DISK_FULL_STATUS}" in result.stdout, result
    assert "Traceback" not in result.stderr and "Bus error" not in result.stderr
    run, config_import = result.stderr.strip().splitlines()  # nothing else is said
    assert "ERROR disk full: 0 KiB free" in run
    assert config_import.startswith("mbusgw config import: error: disk full: 0 KiB free")
    assert "created" not in result.stdout  # the refused import made no store


def test_a_cycle_caught_by_a_full_disk_is_held_and_stored_when_there_is_room(
    tmp_path: Path,
) -> None:
    report = rig(tmp_path, "8m", "cycle")
    assert report["readings"] == METERS  # every meter of the start-up read, stored late
    console = "\n".join(report["console"])
    assert "disk full: nothing could be stored" in console
    assert f"the {METERS} reading(s) of this cycle are held" in console
    assert f"read at start: {METERS} of {METERS} meters read, 0 failed" in console
    assert "failed:" not in console and "_read_now_logged" not in console
    # the system log in the store has the full disk too, written once there was room
    assert any("disk full" in text for text in report["system_log"])


def test_the_map_grows_no_larger_than_the_disk_and_the_store_prunes_instead(
    tmp_path: Path,
) -> None:
    report = rig(tmp_path, "4m", "map")
    assert report["failed"] == [] and report["acknowledged"] == 100
    assert report["max_bytes"] > 1000 * MiB  # the setting alone would let it grow past the disk
    assert report["map_bytes"] <= 4 * MiB
    assert any("grown" in text for text in report["events"])
    assert any("store full" in text and "raw telegrams" in text for text in report["events"])
    assert report["problems"] == []
