"""Every time a page shows is in the configured time zone, in one format: a known UTC instant
(23:03:03 UTC, 6 December) reads 2026-12-07 00:03:03 CET in Stockholm, and never as the UTC
time labelled with the zone."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
from test_security import sign_in
from webclient import ADMIN, Client, body
from webrig import METER_CSV, RigGateway, open_rig

from mbusgw.web.times import shown_time

AT = datetime(2026, 12, 6, 23, 3, 3, tzinfo=UTC)
SHOWN = "2026-12-07 00:03:03 CET"
UTC_TEXT = ("23:03:03", "2026-12-06T23", "2026-12-06 23")


class FixedClock:
    def now(self) -> datetime:
        return AT


@pytest.fixture
async def gateway(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[RigGateway]:
    rig = await open_rig(nursery, tmp_path, FixedClock())
    rig.started_at = AT
    await rig.update_settings({"timezone": "Europe/Stockholm"})
    yield rig
    rig.writer.close()


def test_one_format_in_the_zone() -> None:
    assert shown_time(AT, "Europe/Stockholm") == SHOWN
    assert shown_time("2026-12-06T23:03:03+00:00", "Europe/Stockholm") == SHOWN
    assert shown_time("2026-12-06T23:03:03.250Z", "Europe/Stockholm") == SHOWN
    assert shown_time("2026-12-06T23:03:03", "Europe/Stockholm") == SHOWN  # no offset: UTC
    assert shown_time(AT.timestamp(), "Europe/Stockholm") == SHOWN
    assert shown_time("2026-07-01T10:00:00Z", "Europe/Stockholm") == "2026-07-01 12:00:00 CEST"
    assert shown_time(AT, "UTC") == "2026-12-06 23:03:03 UTC"
    assert shown_time(None, "UTC") == "" and shown_time("never", "UTC") == "never"


async def test_pages_show_times_in_the_configured_zone(
    app, admin: Client, gateway: RigGateway
) -> None:
    installed = await admin.post(
        "/api/v1/meters", data=METER_CSV, headers={"Content-Type": "text/csv"}
    )
    assert installed.status_code == 200
    await gateway.store_reading("12345678", int(AT.timestamp()), 1000, "1.5")
    gateway.store.log.warning("web", "a warning to see in the log")
    await gateway.writer.flush()
    job = body(await admin.post("/api/v1/values/read"))
    browser = Client(app, None)
    await sign_in(browser, *ADMIN)
    pages = ["/", "/system", "/device", "/log", "/meters", "/meters/12345678", "/users"]
    pages += ["/account", f"/jobs/{job['id']}"]
    for url in pages:
        html = (await (await browser.get(url)).get_data()).decode()
        shown = re.sub(r"<[^>]*>", " ", html)  # what a person sees, not attributes
        assert SHOWN in shown, url
        assert not any(text in shown for text in UTC_TEXT), url
    meter = (await (await browser.get("/meters/12345678")).get_data()).decode()
    assert 'data-zone="Europe/Stockholm"' in meter  # the graph's axis follows the zone too
    # the log page's dates are days in the zone too: 00:03 CET is on 7 December
    day = "since=2026-12-07&until=2026-12-07"
    log = (await (await browser.get(f"/log?{day}")).get_data()).decode()
    assert "a warning to see in the log" in log and SHOWN in log
    exported = (await (await browser.get(f"/log.csv?{day}")).get_data()).decode()
    assert "a warning to see in the log" in exported
    before = (await (await browser.get("/log?until=2026-12-06")).get_data()).decode()
    assert "a warning to see in the log" not in before
