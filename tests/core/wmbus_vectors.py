"""The public wireless M-Bus vectors (tests/data/wmbus, see its README for sources and licences),
flattened into one variant per upstream use: telegram, key, expected outcome."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

CASES = Path(__file__).parent.parent / "data" / "wmbus" / "cases.jsonl"
OTHER_KEYS = re.compile(r"other keys configured elsewhere: ([0-9A-Fa-f]{32})")


@dataclass(frozen=True)
class Variant:
    name: str
    case: dict = field(repr=False)
    telegram: bytes
    key: str | None
    key_check: str
    expected_kind: str
    expected: dict | None = field(repr=False)
    frame: str | None = None

    @property
    def classification(self) -> dict:
        return self.case["classification"]

    @property
    def medium(self) -> str:
        return self.classification.get("medium")

    @property
    def frame_format(self) -> str:
        """The format the upstream test told its parser ("CRC specified > Frame Type B …")."""
        match = re.search(r"CRC specified > Frame Type ([AB])", self.name)
        return match.group(1) if match else "auto"


def load_cases() -> list[dict]:
    return [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]


def _telegram(case: dict, raw_hex: str) -> bytes:
    data = bytes.fromhex(raw_hex)
    if case.get("no_l_field"):
        data = bytes((len(data),)) + data
    return data


def variants(medium: str = "wireless") -> list[Variant]:
    """Every use of every case of ``medium`` (the representative and its ``also_in`` entries);
    keys that the notes name as configured elsewhere become wrong-key variants."""
    out = []
    for case in load_cases():
        if case["classification"].get("medium") != medium:
            continue
        uses = [case] + case["also_in"]
        for use in uses:
            raw = use.get("telegram_hex") or case["telegram_hex"]
            out.append(
                Variant(
                    f"{case['source_repo'].split('/')[0]}:{use['test_name']}",
                    case,
                    _telegram(case, raw),
                    use["key"],
                    use["key_check"],
                    use["expected_kind"],
                    use["expected_json"],
                    use.get("frame") or case["classification"].get("frame"),
                )
            )
            for other in OTHER_KEYS.findall(use.get("notes") or ""):
                out.append(
                    Variant(
                        f"{case['source_repo'].split('/')[0]}:{use['test_name']} (other key)",
                        case,
                        _telegram(case, raw),
                        other,
                        "fail",
                        "error",
                        {"error": "wrong key configured elsewhere"},
                        use.get("frame") or case["classification"].get("frame"),
                    )
                )
    return out


def unique(items: list[Variant]) -> list[Variant]:
    """One variant per (telegram, key, expectation)."""
    seen = set()
    out = []
    for v in items:
        marker = (v.telegram, v.key, v.key_check, v.expected_kind, v.frame_format)
        if marker not in seen:
            seen.add(marker)
            out.append(v)
    return out
