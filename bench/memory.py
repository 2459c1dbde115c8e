"""Resident memory of a process as the benches report it. A module of its own, importing
nothing: a bench that measures its own process (``bench gateway``) must not load the HTTP
client of another bench with it."""

from __future__ import annotations

import re
from pathlib import Path


def rss_split_mb(pid: int) -> dict[str, float]:
    """Resident memory by kind: anonymous (the heap, arenas, stacks) and file-backed (code of
    the interpreter and extension modules, mapped store pages)."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kinds = {"anon": "Anonymous", "file": "Rss"}
    found = {k: re.search(rf"^{v}:\s+(\d+) kB", text, re.M) for k, v in kinds.items()}
    anon = int(found["anon"].group(1)) if found["anon"] else 0
    rss = int(found["file"].group(1)) if found["file"] else 0
    return {"anon": round(anon / 1024, 1), "file": round((rss - anon) / 1024, 1)}
