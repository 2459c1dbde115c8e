"""What the documents say about the web matches what it does."""

from __future__ import annotations

import re
from pathlib import Path

from mbusgw.web.openapi import SCHEMAS, build_document

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "web" / "templates"


def test_the_api_description_names_the_page_where_tokens_are_made() -> None:
    (page,) = [t for t in TEMPLATES.glob("*.html") if "<h2>API tokens</h2>" in t.read_text()]
    title = re.search(r"<h1>(.*?)</h1>", page.read_text()).group(1)
    description = build_document([])["info"]["description"]
    assert f"created under {title}" in description


def test_known_limits_of_the_web_guide_are_still_limits() -> None:
    text = (ROOT / "docs" / "web.md").read_text()
    limits = text.split("## Known limits", 1)[1].split("\n## ", 1)[0].lower()
    # keys are kept in the store (gateway/key_records.py) and wireless searches exist
    assert "wireless" in SCHEMAS["ScanRequest"]["properties"]["kind"]["enum"]
    assert "keys do not survive" not in limits
    assert "wireless meters are not searched" not in " ".join(limits.split())
