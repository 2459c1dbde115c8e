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
import struct
import sys
import zlib
from pathlib import Path

import pytest
import trio
from webrig import free_port

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.lines import meters_on, simulated_line
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.web import graph

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
    width, height, pixels = png_pixels((tmp_path / "graph.png").read_bytes())
    assert (width, height) == (graph.W, graph.H) and seen["png_name"].endswith(".png")
    assert seen["png_without_script"] is False
    colours = {pixels[i : i + 3] for i in range(0, len(pixels), 4)}
    assert b"\xff\xff\xff" in colours and b"\x0b\x5c\xad" in colours  # background, the line
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


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGBA pixels of an 8-bit RGBA PNG (what a canvas exports)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    chunks, at = {}, 8
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        chunks[kind] = chunks.get(kind, b"") + data[at + 8 : at + 8 + size]
        at += size + 12
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 6), (depth, colour)
    raw, stride = zlib.decompress(chunks[b"IDAT"]), width * 4
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        at = y * (stride + 1)
        kind, row = raw[at], bytearray(raw[at + 1 : at + 1 + stride])
        for x in range(stride):  # undo the row's filter (PNG spec, section 9)
            left = row[x - 4] if x >= 4 else 0
            up, corner = previous[x], previous[x - 4] if x >= 4 else 0
            if kind == 1:
                row[x] = (row[x] + left) & 255
            elif kind == 2:
                row[x] = (row[x] + up) & 255
            elif kind == 3:
                row[x] = (row[x] + (left + up) // 2) & 255
            elif kind == 4:
                guess = left + up - corner
                near = min((abs(guess - left), 0, left), (abs(guess - up), 1, up),
                           (abs(guess - corner), 2, corner))  # fmt: skip
                row[x] = (row[x] + near[2]) & 255
        rows.append(row)
        previous = row
    return width, height, b"".join(rows)
