"""The Modbus page: the server's state and counters, its settings as a form (refusals at their
inputs, nothing saved), the register map as a table in words. A real gateway on the
simulator with the Modbus server on a free loopback port."""

from __future__ import annotations

import re
from pathlib import Path

import trio
from test_readable import SNAKE_QUANTITIES, visible
from test_security import csrf_of, sign_in
from webclient import ADMIN, Client, complete_first_login
from webrig import real_gateway

from mbusgw.gateway.settings import InterfaceConfig

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=2)
SETTINGS = {"modbus": {"host": "127.0.0.1", "port": 0},
            "reading": {"schedule": "0 0 1 1 *"}}  # fmt: skip


async def test_modbus_page(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with real_gateway(tmp_path, SETTINGS, (LINE,)) as (gateway, app):
            await complete_first_login(Client(app, None))
            browser = Client(app, None)
            await sign_in(browser, *ADMIN)
            while gateway.modbus.address is None:
                await trio.sleep(0.02)
            assert all(r.ok for r in (await gateway.read_all()).readings)  # values mapped
            html = (await (await browser.get("/modbus")).get_data()).decode()
            form = {"csrf_token": csrf_of(html), "host": "127.0.0.1", "port": "0",
                    "unit_id": "1", "max_connections": "7", "idle_timeout_s": "120",
                    "data_type": "float32", "constant": "1",
                    "invalid_addresses": "exception", "word_order": "big",
                    "rtu_device": "", "rtu_baud_rate": "19200",
                    "enabled": "on"}  # fmt: skip
            saved = await browser.post("/modbus", form=form)
            refused = await browser.post("/modbus", form=form | {"unit_id": "300"})
            refused_html = (await refused.get_data()).decode()
            after = gateway.settings.modbus.max_connections
    text = " ".join(visible(html).split())
    port = gateway.modbus.address[1] if gateway.modbus.address else None
    assert re.search(r"State listening on 127\.0\.0\.1:\d+", text), port
    assert "Register map" in text and "Holds" in text
    rows = re.findall(r"<tr><td>\d+</td>.*?</tr>", html)
    assert len(rows) > 10
    assert not SNAKE_QUANTITIES & set(re.findall(r"[a-z]+(?:_[a-z0-9]+)+", text))
    assert "Energy" in text or "Volume" in text
    assert saved.status_code == 303 and after == 7
    assert refused.status_code == 400 and 'data-for="unit_id"' in refused_html
