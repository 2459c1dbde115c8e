"""Decode the public libmbus corpus: our typed arrays and Python records beside the peers.

Workloads, each on the same 38 frames, reported in µs per frame (best of several rounds):
- ``ours_array``: ``decode(frame)``, its ``header`` and its ``array`` — what a store ingest
  does (no Python record objects).
- ``ours_records``: ``decode(frame).records`` and every record's ``value`` (int, exact
  Decimal, float, date ...) — the Python view the CLI and the web use.
- ``pymbusparser``: ``pymbusparser.parse(frame)`` (Rust, returns nested dicts).
- ``pymeterbus``: ``meterbus.load(frame)`` and every record's value (pure Python).
A peer that is not installed is skipped, and the table says so.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from pathlib import Path

from mbusgw.core import decode

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "libmbus" / "test-frames"
GOALS_US = {"ours_array": 1.0, "ours_records": 3.0}
SMOKE_ARGV = ["--budget=0.005", "--rounds=1"]


def load_corpus() -> list[bytes]:
    return [
        bytes(int(token, 16) for token in path.read_text().split())
        for path in sorted(CORPUS.glob("*.hex"))
    ]


def ours_array(frames: list[bytes]) -> None:
    for frame in frames:
        telegram = decode(frame)
        telegram.header  # noqa: B018 - which meter: built on first access
        telegram.array  # noqa: B018 - the values: built on first access


def ours_records(frames: list[bytes]) -> None:
    for frame in frames:
        for record in decode(frame).records:
            record.value  # noqa: B018 - values are computed on first access


def peer_workloads() -> dict[str, Callable[[list[bytes]], None] | str]:
    """Name -> workload, or name -> why it is skipped."""
    out: dict[str, Callable[[list[bytes]], None] | str] = {}
    try:
        pymbusparser = importlib.import_module("pymbusparser")

        def run_pymbusparser(frames: list[bytes]) -> None:
            for frame in frames:
                pymbusparser.parse(frame)

        out["pymbusparser"] = run_pymbusparser
    except ImportError:
        out["pymbusparser"] = "not installed (pip install '.[bench]')"
    try:
        meterbus = importlib.import_module("meterbus")

        def run_pymeterbus(frames: list[bytes]) -> None:
            for frame in frames:
                for record in meterbus.load(frame).records:
                    record.value  # noqa: B018 - the values are computed on access

        out["pymeterbus"] = run_pymeterbus
    except ImportError:
        out["pymeterbus"] = "not installed (pip install '.[bench]')"
    return out


def time_per_frame(
    workload: Callable[[list[bytes]], None],
    frames: list[bytes],
    budget: float = 0.2,
    rounds: int = 4,
) -> float:
    """Best of ``rounds`` more rounds, in µs per frame; each round runs for about ``budget``
    seconds."""
    workload(frames)
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            workload(frames)
        elapsed = time.perf_counter() - start
        if elapsed > budget or loops >= 1 << 20:
            break
        loops *= 2
    best = elapsed
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            workload(frames)
        best = min(best, time.perf_counter() - start)
    return best / (loops * len(frames)) * 1e6


def accepted(workload: Callable[[list[bytes]], None], frames: list[bytes]) -> set[int]:
    """Indexes of the frames a decoder handles without raising."""
    ok = set()
    for index, frame in enumerate(frames):
        try:
            workload([frame])
        except Exception:  # noqa: BLE001 - a peer's failure only excludes the frame
            continue
        ok.add(index)
    return ok


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_decode")
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds (best is kept)")
    args, _ = parser.parse_known_args(argv)
    corpus = load_corpus()
    workloads: dict[str, Callable[[list[bytes]], None] | str] = {
        "ours_array": ours_array,
        "ours_records": ours_records,
        **peer_workloads(),
    }
    # time everyone on the frames every decoder accepts, so the ratios compare the same work
    common = set(range(len(corpus)))
    rejected: dict[str, int] = {}
    for name, workload in workloads.items():
        if not isinstance(workload, str):
            ok = accepted(workload, corpus)
            rejected[name] = len(corpus) - len(ok)
            common &= ok
    frames = [corpus[i] for i in sorted(common)]
    records = sum(len(decode(frame)) for frame in frames)
    print(
        f"libmbus public corpus: {len(corpus)} frames; timed on the {len(frames)} that every "
        f"decoder accepts ({records} records, {records / len(frames):.1f} per frame)"
    )
    for name, count in rejected.items():
        if count:
            print(f"  {name} rejects {count} of the {len(corpus)} frames")
    results: dict = {
        "frames": len(frames),
        "records": records,
        "rejected": rejected,
        "us_per_frame": {},
    }
    for name, workload in workloads.items():
        if isinstance(workload, str):
            results.setdefault("skipped", {})[name] = workload
            continue
        results["us_per_frame"][name] = time_per_frame(workload, frames, args.budget, args.rounds)
    timings = results["us_per_frame"]
    base = timings["ours_array"]
    print(f"{'workload':<14} {'µs/frame':>10} {'x ours_array':>13}  goal")
    for name, micros in timings.items():
        goal = GOALS_US.get(name)
        verdict = "" if goal is None else f"<= {goal} µs: {'met' if micros <= goal else 'MISSED'}"
        print(f"{name:<14} {micros:>10.3f} {micros / base:>13.1f}  {verdict}")
    for name, why in results.get("skipped", {}).items():
        print(f"{name:<14} skipped: {why}")
    for peer in ("pymbusparser", "pymeterbus"):
        if peer in timings:
            for ours in ("ours_array", "ours_records"):
                results.setdefault("ratios", {})[f"{peer}/{ours}"] = timings[peer] / timings[ours]
    for key, ratio in results.get("ratios", {}).items():
        print(f"{key}: {ratio:.0f}x")
    return results
