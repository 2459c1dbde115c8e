"""Titles and headings in words, a favicon, job pages that say what the job does."""

from __future__ import annotations

from test_readable import visible
from test_security import sign_in
from webclient import ADMIN, Client, body, csv_upload

from mbusgw.web.readable import job_title


async def test_favicon_is_served_to_anyone(app) -> None:
    anonymous = Client(app, None)
    icon = await anonymous.get("/favicon.ico")
    assert icon.status_code == 301 and icon.headers["Location"].endswith("/static/favicon.svg")
    svg = await anonymous.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml")
    login = (await (await anonymous.get("/login")).get_data()).decode()
    assert 'rel="icon"' in login


async def test_job_pages_in_words(app, admin, gateway) -> None:
    installed = await admin.post("/api/v1/meters", data=csv_upload()["file"].read(),
                                 headers={"Content-Type": "text/csv"})  # fmt: skip
    assert installed.status_code == 200
    job = body(await admin.post("/api/v1/values/read"))
    browser = Client(app, None)
    await sign_in(browser, *ADMIN)
    html = (await (await browser.get(f"/jobs/{job['id']}")).get_data()).decode()
    text = visible(html)
    assert "<title>Reading all meters" in html and "read_all" not in text
    assert "Found:" not in text  # a reading finds no meters; only searches do
    for url in ("/", "/search"):
        assert "read_all" not in visible((await (await browser.get(url)).get_data()).decode())
    assert job_title("scan_secondary") == "Search by secondary address"
    assert job_title("something_new") == "Something new"


async def test_forms_explain_empty_and_special_values_in_words(app, admin, gateway) -> None:
    browser = Client(app, None)
    await sign_in(browser, *ADMIN)
    for url in ("/reports/new", "/settings/reports", "/modbus"):
        text = visible((await (await browser.get(url)).get_data()).decode())
        assert "'' =" not in text and "-1 =" not in text and "empty =" not in text, url
    text = visible((await (await browser.get("/reports/new")).get_data()).decode())
    assert "Leave empty for anonymous" in text and "-1 means " in text
    assert "Every 15 minutes" in text and "every_15_minutes" not in text
