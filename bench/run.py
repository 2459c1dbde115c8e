"""Run every benchmark module (``bench/bench_*.py``) and write ``bench/results/latest.json``.

Each module defines ``main(argv: list[str]) -> dict``: it runs its workloads on our code and on
the peers installed beside it in the same process, prints a table with ratios, and returns the
numbers. ``python -m bench.run store`` runs ``bench_store`` alone; a word that is no module's
area (``python -m bench.run mod``) runs every module whose name contains it.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).parent


def main(argv: list[str]) -> int:
    wanted = [arg for arg in argv if not arg.startswith("-")]
    modules = sorted(path.stem for path in BENCH_DIR.glob("bench_*.py"))
    # an exact area name (``bus``) selects that module alone; otherwise a part of a name selects
    # every module containing it
    exact = [name for name in modules if name.removeprefix("bench_") in wanted]
    selected = exact or [name for name in modules if not wanted or any(w in name for w in wanted)]
    if not selected:
        print(f"no benchmark module matches {wanted}; there are: {', '.join(modules)}")
        return 2
    results: dict = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for name in selected:
        print(f"\n== {name}")
        module = importlib.import_module(f"bench.{name}")
        results[name.removeprefix("bench_")] = module.main(argv)
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    if wanted:
        # a partial run updates its own sections of the last full run
        previous = out / "latest.json"
        if previous.exists():
            results = {**json.loads(previous.read_text()), **results}
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults written to {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
