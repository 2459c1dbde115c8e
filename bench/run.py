"""Run every benchmark module (``bench/bench_*.py``) and write ``bench/results/latest.json``.

Each module defines ``main(argv: list[str]) -> dict``: it runs its workloads on our code and on
the peers installed beside it in the same process, prints a table with ratios, and returns the
numbers. ``python -m bench.run store`` runs ``bench_store`` alone; a word that is no module's
area (``python -m bench.run mod``) runs every module whose name contains it.

``--smoke`` runs each selected module on the tiny workload its ``SMOKE_ARGV`` names (options of
its own ``main``), in seconds, to show that it still runs; its numbers mean nothing and are not
written. The tests run every module this way.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).parent


def module_names() -> list[str]:
    return sorted(path.stem for path in BENCH_DIR.glob("bench_*.py"))


def run_modules(names: list[str], argv: list[str], *, smoke: bool = False) -> dict:
    """Each module's results by area; with ``smoke``, on the module's tiny workload (options
    given in ``argv`` still win: they come last)."""
    results = {}
    for name in names:
        print(f"\n== {name}")
        module = importlib.import_module(f"bench.{name}")
        options = [*module.SMOKE_ARGV, *argv] if smoke else argv
        results[name.removeprefix("bench_")] = module.main(options)
    return results


def main(argv: list[str]) -> int:
    smoke = "--smoke" in argv
    argv = [arg for arg in argv if arg != "--smoke"]
    wanted = [arg for arg in argv if not arg.startswith("-")]
    modules = module_names()
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
    results.update(run_modules(selected, argv, smoke=smoke))
    if smoke:
        print("\nsmoke run: every selected benchmark ran (numbers not kept)")
        return 0
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
