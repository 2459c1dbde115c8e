"""The meter list: each meter's main value with its name, the status with its reason, filters
and sorting; the meter page: wired fields in words, health, the last telegram in hex."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from decimal import Decimal

from test_pages import browser_with_meters
from webrig import HEAT, VOLUME, StoredReading

from mbusgw.gateway.health import MeterHealth

FRAME = bytes.fromhex("6815156808017278563412") + bytes(range(8)) + bytes.fromhex("AB16")


def positions(html: str) -> list[str]:
    return re.findall(r'<tr class="\w+" data-key="[^"]+">\s*<td><a [^>]*>([^<]+)</a>', html)


async def test_filters_sorting_status_and_the_last_telegram(app, admin, gateway) -> None:
    browser = await browser_with_meters(app, admin, gateway)
    now = int(time.time())
    reading = StoredReading.of("12345679", now - 30, [(HEAT, 2500), (VOLUME, Decimal("12.5"))],
                               frames=[FRAME], duration_ms=180)  # fmt: skip
    await gateway.writer.put_readings([reading])
    at = datetime.fromtimestamp(now, UTC)
    gateway.health["12345679"] = MeterHealth("12345679")
    gateway.health["12345679"].record(at, True, response_ms=180.0)
    water = next(m.key for m in gateway.meters if m.position == "Water cellar")
    gateway.health[water] = MeterHealth(water)
    gateway.health[water].record(at, False, error="no answer")

    async def page(query: str) -> str:
        return (await (await browser.get(f"/meters{query}")).get_data()).decode()

    everything = await page("")
    assert positions(everything) == ["Heat flat 1", "Heat flat 2", "Water cellar"]
    assert "no answer" in everything  # the reason beside the status
    assert re.search(r'class="quantity">Energy</span>\s*<details', everything)
    assert positions(await page("?status=failed")) == ["Water cellar"]
    assert positions(await page("?status=ok")) == ["Heat flat 1", "Heat flat 2"]
    assert positions(await page("?q=CELLAR")) == ["Water cellar"]
    assert positions(await page("?q=12345679")) == ["Heat flat 2"]
    assert positions(await page("?sort=position&order=desc")) == [
        "Water cellar", "Heat flat 2", "Heat flat 1"]  # fmt: skip
    assert positions(await page("?sort=status"))[0] == "Water cellar"  # failed first
    assert "No meter matches the filter." in await page("?q=nothing-like-this")
    assert positions(await page("?sort=bogus&status=bogus")) == positions(everything)
    meter = (await (await browser.get("/meters/12345679")).get_data()).decode()
    assert " ".join(f"{b:02X}" for b in FRAME) in meter  # the last telegram in hex
    assert "secondary address" in meter and "esecondary" not in meter
    assert "Baud rate" in meter and "2400 Bd" in meter  # a wired meter's fields
    assert 'class="sparkline"' in meter and "180 ms" in meter
    assert re.search(r"<td>Energy</td><td class=\"num\">\s*<details", meter)
