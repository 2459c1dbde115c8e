"""Values as people read them: quantities in words (three languages), scaled units, the exact
stored value beside the readable one, and no identifier of a quantity on any page."""

from __future__ import annotations

import re
import time
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser

from test_pages import PAGES, browser_with_meters
from webrig import SeriesSpec, StoredReading

from mbusgw.core.units import Quantity
from mbusgw.gateway.quantity_names import quantity_label
from mbusgw.web.readable import labelled, reading_text

KEY = "12345679"  # Heat flat 2: only the values stored here
ENERGY_WH = SeriesSpec(bytes.fromhex("0406"), "energy", "Wh", "")
VOLUME = SeriesSpec(bytes.fromhex("0C13"), "volume", "m³", "")
OLD_VOLUME = SeriesSpec(bytes.fromhex("4C13"), "volume", "m³", "storage 1")
FLOW_TEMPERATURE = SeriesSpec(bytes.fromhex("0A5A"), "flow_temperature", "°C", "")
MAX_POWER = SeriesSpec(bytes.fromhex("1A2B"), "power", "W", "maximum, tariff 2")
SERIAL = SeriesSpec(bytes.fromhex("0C78"), "fabrication_number", "", "")
ERRORS = SeriesSpec(bytes.fromhex("02FD17"), "error_flags", "", "")
DATE = SeriesSpec(bytes.fromhex("026C"), "time_point", "", "")
DATE_AGAIN = SeriesSpec(bytes.fromhex("426C"), "time_point", "", "")
SNAKE_QUANTITIES = {q.name.lower() for q in Quantity if "_" in q.name}


class VisibleText(HTMLParser):
    """The text a person sees (no tags, attributes, scripts or styles)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def visible(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return " ".join(parser.parts)


def test_quantities_in_words_in_three_languages() -> None:
    assert quantity_label("flow_temperature") == "Flow temperature"
    assert quantity_label("flow_temperature", "", "sv") == "Framledningstemperatur"
    assert quantity_label("flow_temperature", "", "de") == "Vorlauftemperatur"
    assert quantity_label("power", "maximum, tariff 2") == "Power, maximum, tariff 2"
    assert quantity_label("volume", "storage 1", "de") == "Volumen, Speicher 1"
    assert quantity_label("volume", "storage 1", "sv") == "Volym, lagring 1"
    # every quantity the decoder knows reads as words
    for quantity in Quantity:
        assert "_" not in quantity_label(quantity.name.lower(), "", "en"), quantity


def test_scaled_units_and_sensible_decimals() -> None:
    assert reading_text(29335930000, "Wh") == "29.34 GWh"
    assert reading_text(1009, "kWh") == "1.009 MWh"
    assert reading_text(Decimal("370.289"), "m³") == "370.3 m³"
    assert reading_text(Decimal("0.331"), "m³") == "0.331 m³"
    assert reading_text(0.5, "kW") == "500 W"
    assert reading_text(0, "Wh") == "0 Wh"
    assert reading_text(-1500, "W") == "-1.5 kW"
    assert reading_text("2026-12-06", "") == "2026-12-06"
    assert reading_text("2014-03-13T12:10:00", "") == "2014-03-13 12:10:00"
    assert reading_text(102902400, "s") == "1191 d"
    assert reading_text(90, "min") == "1.5 h" and reading_text(30, "s") == "30 s"
    assert reading_text(2, "d") == "2 d"  # never smaller than the stored unit


def test_repeated_labels_are_told_apart() -> None:
    series = [{"quantity": "time_point", "description": ""} for _ in range(2)]
    assert [s["label"] for s in labelled(series, "en")] == ["Date and time", "Date and time (2)"]


async def test_no_page_shows_a_quantity_identifier(app, admin, gateway) -> None:
    browser = await browser_with_meters(app, admin, gateway)
    now = int(time.time())
    values = [(ENERGY_WH, 29335930000), (VOLUME, Decimal("370.289")),
              (OLD_VOLUME, Decimal("0.331")), (FLOW_TEMPERATURE, Decimal("55.5")),
              (MAX_POWER, 1500), (SERIAL, 12345678), (ERRORS, 0),
              (DATE, date(2026, 12, 6)), (DATE_AGAIN, date(2026, 11, 30))]  # fmt: skip
    await gateway.writer.put_readings([StoredReading.of(KEY, now - 60, values)])
    for url in (*PAGES, f"/meters/{KEY}?range=365d"):
        html = (await (await browser.get(url)).get_data()).decode()
        text = visible(html)
        named = SNAKE_QUANTITIES & set(re.findall(r"[a-z]+(?:_[a-z0-9]+)+", text))
        assert not named, (url, named)
        assert "[]" not in text, url
    listing = visible((await (await browser.get("/meters")).get_data()).decode())
    assert "Energy 29.34 GWh 29335930000 Wh" in " ".join(listing.split())
    page = (await (await browser.get(f"/meters/{KEY}")).get_data()).decode()
    menu = re.findall(r"<option value=\"\d+\"[^>]*>([^<]*)</option>", page)
    for label in ("Energy (Wh)", "Flow temperature (°C)", "Volume, storage 1 (m³)",
                  "Power, maximum, tariff 2 (W)", "Serial number", "Error flags",
                  "Date and time", "Date and time (2)"):  # fmt: skip
        assert label in menu, (label, menu)
