"""A real browser (Debian's chromium driven by Playwright) against the real gateway: store in a
temporary directory, the simulator as the bus, the web service in the gateway's tree.

The browser signs in with admin/admin, must choose a new account, uploads a meter list, reads
all meters, sees them read, opens a meter page with its graph, exports the system log, and adds
a push report whose test fails against a receiver that is down, with the error in its status.
Screenshots of the main pages go to ``test-artefacts/screenshots`` (git-ignored).
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest
import trio
from webrig import free_port

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.lines import meters_on, simulated_line
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=2400, meters=6)

pytestmark = pytest.mark.slow


def meter_list() -> str:
    """The simulated meters as a field engineer's list, with their flats as positions."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Position", "SecondaryAddress", "BaudRate", "AddressingMode",
                     "PrimaryAddress", "EnhancedAddress"])  # fmt: skip
    for number, meter in enumerate(meters_on(simulated_line(LINE, seed=1)), start=1):
        writer.writerow([f"Flat {number}", meter.secondary_address, 2400, "secondary", "", ""])
    return out.getvalue()


async def test_field_engineer_session(tmp_path: Path) -> None:
    port = free_port()
    startup = StartupConfig(
        data_dir=tmp_path / "data", web_host="127.0.0.1", web_port=port, interfaces=(LINE,)
    )
    gateway = Gateway(startup)
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            (tmp_path / "meters.csv").write_text(meter_list())
            script = Path(__file__).with_name("browser_session.py")
            session = [sys.executable, str(script), f"http://127.0.0.1:{port}", str(tmp_path)]
            done = await trio.run_process(session, capture_stderr=True, check=False)
            gateway.stop()
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["positions"] == [f"Flat {n}" for n in range(1, 7)]
    assert seen["statuses"] == ["ok"] * 6, seen
    assert "6 of 6 meters read" in seen["job"]
    assert seen["points"] >= 3 and " in " in seen["caption"], seen["caption"]  # ticks, unit
    assert " CET" in seen["readout"] or " UTC" in seen["readout"], seen["readout"]
    mains = [" ".join(v.split()) for v in seen["main_values"]]  # "Energy 12.89 GWh"
    assert all(re.fullmatch(r"[A-Z][a-z]+( [a-z]+)* -?[\d.]+ \S+", v) for v in mains), mains
    assert {v.split()[0] for v in mains} >= {"Energy", "Volume"}, mains
    checked = seen["identifiers"].pop("controls reached by keyboard")
    assert sum(map(int, checked)) >= 40, checked  # every form control of every page, by Tab
    assert seen["identifiers"] == {}, seen["identifiers"]
    header, *rows = list(csv.reader(io.StringIO(seen["log_csv"])))
    assert header == ["time", "level", "level_name", "origin", "text"]
    assert any("meter list installed" in row[-1] for row in rows)
    assert "wrong user name or password" in seen["old_login"]
    assert "DeliveryError" in seen["report_job"] and seen["report_error"]
