"""The built wheel, installed into a fresh virtualenv outside the checkout, is a working gateway.

The wheel is built once per test session (``pip wheel``, as ``make dist`` does). The compiled
core of the checkout's own install goes where that build looks for it first, so the session does
not compile it again: setuptools skips an extension whose built file is newer than its sources
and compiles any other (``make install`` builds it in place from the same sources and flags).
The virtualenv takes its dependencies from the package indexes pip is configured with, as an
integrator's would; nothing of the checkout is on its path. ``mbusgw run`` starts on the
built-in simulator and reports its readiness over a real ``NOTIFY_SOCKET`` datagram socket, as
systemd's ``Type=notify`` expects.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAME = (ROOT / "tests/data/libmbus/test-frames/example_data_01.hex").read_text().strip()
QUIET = {"modbus": {"port": 0}, "reading": {"read_at_start": False}}


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the source distribution, built once per session."""
    out = tmp_path_factory.mktemp("dist")
    seed_compiled_core()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    for command in (
        [*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", str(out), str(ROOT)],
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(out)],
    ):
        built = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert built.returncode == 0, built.stderr
    return out


def seed_compiled_core() -> None:
    """Copy the checkout's compiled extensions, with their times, into the wheel build's tree."""
    tag = f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
    for folder in ("core", "gateway"):
        built = ROOT / "build" / tag / "mbusgw" / folder
        built.mkdir(parents=True, exist_ok=True)
        for extension in (ROOT / folder).glob("*.so"):
            target = built / extension.name
            if not target.exists() or target.stat().st_mtime < extension.stat().st_mtime:
                shutil.copy2(extension, target)


@pytest.fixture(scope="session")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv, outside the checkout, with the wheel installed."""
    home = tmp_path_factory.mktemp("venv")
    assert not home.is_relative_to(ROOT)
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, timeout=120)
    (wheel,) = dist.glob("mbusgw-*.whl")
    installed = subprocess.run(
        [str(home / "bin/python"), "-m", "pip", "--disable-pip-version-check", "-q", "install",
         "--no-compile",  # byte-compiled on first use: the same work, counted once
         str(wheel)],
        capture_output=True, text=True, timeout=600, cwd=home,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return home


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that could put the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return env | extra


def mbusgw(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin/mbusgw"), *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=clean_env(),
    )  # fmt: skip


def test_the_wheel_carries_the_compiled_core_and_every_data_file(dist: Path) -> None:
    import zipfile

    (wheel,) = dist.glob("mbusgw-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [n for n in names if n.endswith((".pyx", ".c"))]
    for folder in ("web/templates", "web/static", "gateway/simulator/frames"):
        for data in (ROOT / folder).iterdir():
            assert f"mbusgw/{folder}/{data.name}" in names, data
    for pyx in [*(ROOT / "core").glob("*.pyx"), *(ROOT / "gateway").glob("*.pyx")]:
        module = f"mbusgw/{pyx.parent.name}/{pyx.stem}."
        assert any(n.startswith(module) and n.endswith(".so") for n in names), pyx
    assert {"mbusgw/gateway/deploy/mbusgw.service", "mbusgw/gateway/deploy/mbusgw.toml"} <= names


def test_the_sdist_carries_what_compiling_the_core_needs(dist: Path) -> None:
    (sdist,) = dist.glob("mbusgw-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = ["setup.py", "pyproject.toml", "LICENSE", "Containerfile", "docs/install.md"]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "core").glob("*.p[xy][xd]")]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "core").glob("*.h")]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "gateway").glob("*.pyx")]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "web/templates").iterdir()]
    assert sorted(set(needed) - names) == []
    assert not [n for n in names if n.endswith((".c", ".so"))]  # made again by the build


def test_the_installed_wheel_decodes_runs_and_serves(venv: Path, tmp_path: Path) -> None:
    version = mbusgw(venv, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("mbusgw 0.1.0 (core: release build;"), version.stdout

    decoded = mbusgw(venv, "decode", "--json", FRAME, cwd=tmp_path)
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout)["header"]["id"] == "03575845"

    where = subprocess.run(
        [str(venv / "bin/python"), "-c", "import mbusgw.web; print(mbusgw.web.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=clean_env(), check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(venv)
    unit = subprocess.run(
        [str(venv / "bin/python"), "-m", "mbusgw.gateway.deploy", "unit"],
        capture_output=True, text=True, cwd=tmp_path, env=clean_env(), check=True,
    )  # fmt: skip
    assert f"\nExecStart={venv / 'bin/mbusgw'} run --config " in unit.stdout

    data_dir = tmp_path / "data"
    seed = "from mbusgw.gateway.store import Store\n"
    seed += f"with Store.open({str(data_dir / 'store.mdb')!r}) as s:\n"
    seed += f"    s.update_settings({QUIET!r})"  # Modbus on any free port: tests run side by side
    subprocess.run(
        [str(venv / "bin/python"), "-c", seed], cwd=tmp_path, env=clean_env(), check=True
    )
    port = free_port()
    config = tmp_path / "mbusgw.toml"
    config.write_text(f'[web]\nport = {port}\n\n[[interfaces]]\nname = "a"\nkind = "simulator"\n'
                      'meters = 2\n')  # fmt: skip
    with notify_socket(tmp_path) as (address, listener):
        process = subprocess.Popen(
            [str(venv / "bin/mbusgw"), "run", "--config", str(config), "--data-dir",
             str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
            env=clean_env(NOTIFY_SOCKET=address),
        )  # fmt: skip
        try:
            ready = receive(listener, process)
            assert ready.startswith("READY=1\nSTATUS="), ready
            assert "2 active meter(s)" in ready
            base = f"http://127.0.0.1:{port}"
            with urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=20) as answer:
                assert json.load(answer)["info"]["title"]
            with urllib.request.urlopen(f"{base}/login", timeout=20) as answer:
                assert b"<form" in answer.read()  # a template of the wheel
            with urllib.request.urlopen(f"{base}/static/style.css", timeout=20) as answer:
                assert answer.status == 200
            process.send_signal(signal.SIGTERM)
            assert receive(listener, process) == "STOPPING=1"
            output, _ = process.communicate(timeout=30)  # well within systemd's TimeoutStopSec
        finally:
            process.kill()
    assert process.returncode == 0, output
    assert "gateway: stopped" in output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class notify_socket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify"

    def __enter__(self) -> tuple[str, socket.socket]:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        return str(self.path), self.sock

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def receive(listener: socket.socket, process: subprocess.Popen[str]) -> str:
    """The next notification; fails with the process's output if it ends first."""
    listener.settimeout(1)
    for _ in range(120):
        try:
            return listener.recv(4096).decode()
        except TimeoutError:
            assert process.poll() is None, process.communicate()[0]
    raise AssertionError("no notification within two minutes")
