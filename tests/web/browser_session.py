"""The browser side of ``test_browser.py``, run as a process of its own: the tests run in
trio, and Playwright needs plain asyncio. Prints nothing; writes what it saw to
``<work>/seen.json``.

Usage: python browser_session.py BASE_URL WORK_DIR   (WORK_DIR holds meters.csv)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artefacts" / "screenshots"
USER, PASSWORD = "fieldeng", "Install2024"


def drive_browser(base: str, work: Path) -> dict:
    """The whole session in the browser; returns what the test checks afterwards."""
    from playwright.sync_api import expect, sync_playwright

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    csv_file = work / "meters.csv"
    seen: dict = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.set_default_timeout(60_000)

        def shot(name: str) -> None:
            page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)

        page.goto(base + "/")
        expect(page).to_have_url(f"{base}/login?next=/")
        shot("01-login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "admin")
        page.click("button:has-text('Sign in')")
        expect(page).to_have_url(base + "/first-login")
        shot("02-first-login")
        page.fill("input[name=new_username]", USER)
        page.fill("input[name=new_password]", PASSWORD)
        page.fill("input[name=repeat_password]", PASSWORD)
        page.click("button:has-text('Save')")
        expect(page.locator("h1")).to_have_text("Installation")

        page.set_input_files("input[name=file][accept*=csv]", str(csv_file))
        page.click("button:has-text('Install')")
        expect(page.locator(".notice")).to_contain_text("Installed 6 meters")
        page.goto(base + "/")
        shot("03-installation")
        page.click("button:has-text('Read all')")
        expect(page.locator("[data-field=state]")).to_have_text("done", timeout=120_000)
        seen["job"] = page.locator("[data-field=message]").inner_text()
        shot("04-read-all-job")

        page.goto(base + "/meters")
        expect(page.locator("table.meters tbody tr")).to_have_count(6)
        seen["statuses"] = page.locator("table.meters tbody .badge").all_inner_texts()
        seen["positions"] = page.locator("table.meters tbody td:first-child").all_inner_texts()
        shot("05-meters")

        seen["main_values"] = page.locator("table.meters tbody td:last-child").all_inner_texts()

        page.click("text=Flat 1")
        graph = page.locator("figure.graph svg")
        expect(graph).to_be_visible()
        seen["points"] = graph.locator(".x-tick").count()
        seen["caption"] = page.locator("figure.graph figcaption").inner_text()
        box = graph.bounding_box()
        page.mouse.move(box["x"] + box["width"] - 20, box["y"] + box["height"] / 2)
        seen["readout"] = page.locator("figure.graph output.readout").inner_text()
        with page.expect_download() as download_info:
            page.click("button:has-text('Export PNG')")
        png = work / "graph.png"
        download_info.value.save_as(str(png))
        seen["png_name"] = download_info.value.suggested_filename
        # without JavaScript there is no PNG to make: the button is not shown
        plain = browser.new_context(java_script_enabled=False,
                                    storage_state=page.context.storage_state())  # fmt: skip
        no_script = plain.new_page()
        no_script.goto(page.url)
        seen["png_without_script"] = no_script.locator("button.export-png").is_visible()
        plain.close()
        shot("06-meter")

        page.goto(base + "/log")
        shot("07-system-log")
        with page.expect_download() as download_info:
            page.click("text=Export CSV")
        download = download_info.value
        saved = work / "log.csv"
        download.save_as(str(saved))
        seen["log_csv"] = saved.read_text()

        for name, path in (("08-system", "/system"), ("09-search", "/search"),
                           ("10-mbus-settings", "/settings/mbus"), ("11-device", "/device"),
                           ("12-users", "/users"), ("13-keys", "/keys"),
                           ("17-report-receivers", "/settings/reports"),
                           ("18-snmp-receiver", "/integrations/snmp/receivers/new")):  # fmt: skip
            page.goto(base + path)
            shot(name)

        # a push report to a receiver that is down: its test fails, and the status says why
        page.click("nav >> text=Reports")
        page.click("text=Add a report")
        shot("16-report-new")
        page.fill("input[name=name]", "daily")
        page.select_option("select[name=template]", "3101")
        page.fill("input[name='http.uri']", "http://127.0.0.1:9/reports")
        page.click("button:has-text('Add report')")
        expect(page.locator(".notice")).to_contain_text("Report daily added")
        page.click("tr[data-report=daily] button:has-text('Send test')")
        expect(page.locator("[data-field=state]")).to_have_text("failed")
        seen["report_job"] = page.locator("[data-field=message]").inner_text()
        page.goto(base + "/reports")
        seen["report_error"] = page.locator(
            "tr[data-report=daily] [data-field=last_error]"
        ).inner_text()
        shot("15-reports")
        seen["identifiers"] = walk_every_page(page, base, shot)

        page.click("button:has-text('Sign out')")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "admin")
        page.click("button:has-text('Sign in')")
        seen["old_login"] = page.locator(".error").inner_text()
        browser.close()
    return seen


QUANTITY_ID = r"\b(?:[a-z]+_)+(?:temperature|time|number|flags|flow|point|version|rate|duration)\b"


def walk_every_page(page, base: str, shot) -> dict[str, list[str]]:
    """Every page of the navigation and a meter page, at desktop and phone width: a
    screenshot of each, and what of its visible text looks like an identifier (a
    snake_case quantity name or an empty unit ``[]``)."""
    import re

    page.goto(base + "/meters")
    meter = page.locator("table.meters tbody a").first.get_attribute("href")
    paths = [a.get_attribute("href") for a in page.locator("nav[aria-label=main] a").all()]
    found: dict[str, list[str]] = {}
    for width, height, suffix in ((1280, 900, "desktop"), (390, 844, "phone")):
        page.set_viewport_size({"width": width, "height": height})
        for path in [*paths, meter]:
            page.goto(base + path)
            if suffix == "desktop":
                unreached, checked = keyboard_unreached(page)
                found.setdefault("controls reached by keyboard", []).append(str(checked))
                if unreached:
                    found[path + " (keyboard)"] = unreached
            text = page.locator("body").inner_text()
            bad = re.findall(QUANTITY_ID, text) + (["[]"] if "[]" in text else [])
            if bad:
                found[path] = bad
            name = path.strip("/").replace("/", "-") or "installation"
            shot(f"page-{name}-{suffix}")
    return found


MARK_CONTROLS = """() => {
  const stops = [...document.querySelectorAll(
    "a[href], input:not([type=hidden]), select, textarea, button, summary")]
    .filter(e => !e.disabled && e.getClientRects().length);
  const controls = stops.filter(e => e.matches("input, select, textarea, button"));
  controls.forEach((e, i) => e.dataset.kb = String(i));
  return [stops.length, controls.map(e => e.name || e.textContent.trim())];
}"""


def keyboard_unreached(page) -> tuple[list[str], int]:
    """The form controls of the page that pressing Tab from the top does not reach, and how
    many controls it has."""
    stops, names = page.evaluate(MARK_CONTROLS)
    reached = set()
    page.locator("body").focus()
    for _ in range(stops + 5):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement.dataset.kb ?? null"))
    return [name for i, name in enumerate(names) if str(i) not in reached], len(names)


if __name__ == "__main__":
    seen = drive_browser(sys.argv[1], Path(sys.argv[2]))
    Path(sys.argv[2], "seen.json").write_text(json.dumps(seen))
