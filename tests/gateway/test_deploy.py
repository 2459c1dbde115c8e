"""Running as a system service: the systemd unit, readiness over NOTIFY_SOCKET, journal logs.

The unit is checked by systemd's own ``systemd-analyze verify``; readiness goes over a real
datagram socket; the journal's log format is chosen by the real standard error of a child
process (``JOURNAL_STREAM`` names it, as systemd does).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mbusgw.gateway.deploy import config_text, unit_text
from mbusgw.gateway.deploy.__main__ import main as deploy_main
from mbusgw.gateway.settings import load_startup
from mbusgw.gateway.systemd import notify

MBUSGW = Path(sys.executable).parent / "mbusgw"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: bash tools/system-deps.sh installs it"
    return found


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / "mbusgw.service"
    unit.write_text(unit_text(MBUSGW))
    checked = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "mbusgw.service" not in checked.stderr, checked.stderr  # no warning about it
    text = unit.read_text()
    assert f"ExecStart={MBUSGW} run --config" in text
    for line in ("Type=notify", "User=mbusgw", "SupplementaryGroups=dialout",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                 "Restart=on-failure", "StateDirectory=mbusgw"):  # fmt: skip
        assert line in text.splitlines()


def test_the_unit_refuses_a_command_systemd_would_split(tmp_path: Path, capsys) -> None:
    for bad in (Path("bin/mbusgw"), Path("/opt/my gateway/bin/mbusgw")):
        with pytest.raises(ValueError, match="absolute path without spaces"):
            unit_text(bad)
    with pytest.raises(SystemExit):
        deploy_main(["unit", "--command", "/opt/my gateway/bin/mbusgw"])
    assert "absolute path without spaces" in capsys.readouterr().err
    assert deploy_main(["config"]) == 0
    config = tmp_path / "mbusgw.toml"
    config.write_text(capsys.readouterr().out)
    assert config.read_text() == config_text()
    startup = load_startup(config, data_dir=tmp_path)  # the shipped start-up file is valid
    assert (startup.web_host, startup.web_port, startup.interfaces) == ("0.0.0.0", 8080, ())


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_sends_one_datagram_to_the_socket_systemd_names(
    tmp_path: Path, abstract: bool
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        if abstract:
            name = f"mbusgw-test-{os.getpid()}-{tmp_path.name}"
            listener.bind("\0" + name)
            address = "@" + name
        else:
            address = str(tmp_path / "notify")
            listener.bind(address)
        listener.settimeout(5)
        assert notify("READY=1\nSTATUS=ok", {"NOTIFY_SOCKET": address})
        assert listener.recv(100) == b"READY=1\nSTATUS=ok"


def test_notify_without_systemd_or_its_socket_does_nothing(tmp_path: Path, caplog) -> None:
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert "cannot tell systemd 'READY=1'" in caplog.text


LOG_TWICE = """
import logging
from mbusgw.gateway.systemd import log_handler
logging.basicConfig(level=logging.INFO, handlers=[log_handler()])
logging.getLogger("mbusgw.gateway").info("started")
logging.getLogger("mbusgw.gateway").error("line 1\\nline 2")
"""


def test_log_lines_carry_their_priority_when_standard_error_is_the_journal(
    tmp_path: Path,
) -> None:
    stream = tmp_path / "stderr"
    for journal in (True, False):
        with open(stream, "w") as err:
            info = os.fstat(err.fileno())
            env = dict(os.environ)
            env.pop("JOURNAL_STREAM", None)
            if journal:
                env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
            subprocess.run([sys.executable, "-c", LOG_TWICE], stderr=err, env=env, check=True)
        lines = stream.read_text().splitlines()
        if journal:
            assert lines == [
                "<6>mbusgw.gateway: started",
                "<3>mbusgw.gateway: line 1",
                "<3>line 2",
            ]
        else:  # a terminal or a file: timestamps, no priority prefix
            assert lines[0].endswith(" INFO started") and not lines[0].startswith("<")
