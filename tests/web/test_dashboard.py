"""The start page: what needs attention at a glance, with links; the read schedule picker with
a preview of the next runs (nothing saved until asked)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from test_pages import browser_with_meters
from test_readable import visible

from mbusgw.gateway.health import MeterHealth


async def test_glance_links_to_what_needs_attention(app, admin, gateway) -> None:
    browser = await browser_with_meters(app, admin, gateway)
    water = next(m.key for m in gateway.meters if m.position == "Water cellar")
    gateway.health[water] = MeterHealth(water)
    gateway.health[water].record(datetime.now(UTC), False, error="no answer")
    html = (await (await browser.get("/")).get_data()).decode()
    text = " ".join(visible(html).split())
    assert "1 failed" in text and "Needs attention: 1 meter failed" in text
    assert 'href="/meters?status=failed"' in html and 'href="/meters?status=never"' in html
    assert re.search(r"Next reading (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC|not on a schedule)", text)
    assert "Every 15 minutes: next runs" in text  # the default schedule, in words
    assert "every_15_minutes" not in text


async def test_schedule_preview_saves_nothing(app, admin, gateway) -> None:
    browser = await browser_with_meters(app, admin, gateway)
    before = gateway.settings.reading.schedule
    form = {"csrf_token": browser.form_token, "schedule": "cron", "cron": "0 3 * * *",
            "enabled": "on", "action": "preview"}  # fmt: skip
    preview = await browser.post("/schedule", form=form)
    assert preview.status_code == 303 and "preview=0+3" in preview.headers["Location"]
    html = (await (await browser.get(preview.headers["Location"])).get_data()).decode()
    text = " ".join(visible(html).split())
    runs = re.findall(r"\d{4}-\d\d-\d\d 03:00:00 UTC", text)
    assert "Not saved yet." in text and len(runs) == 3, text
    assert 'value="0 3 * * *"' in html
    assert gateway.settings.reading.schedule == before
    bad = await browser.post("/schedule", form=form | {"cron": "61 * * * *"})
    html = (await (await browser.get(bad.headers["Location"])).get_data()).decode()
    assert "61 * * * *:" in visible(html) and gateway.settings.reading.schedule == before
    saved = await browser.post("/schedule", form=form | {"action": "save"})
    assert saved.status_code == 303 and gateway.settings.reading.schedule == "0 3 * * *"
