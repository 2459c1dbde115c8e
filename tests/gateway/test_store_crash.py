"""Crash safety: SIGKILL at random moments never loses an acknowledged value.

A child process (``crash_writer.py``) stores batches, compacts and prunes; after each durable
commit it prints ``ACK n``. It is killed with SIGKILL at a random moment, many times over.
After each kill the store must hold every acknowledged batch exactly, every batch must be there
whole or not at all, and the full consistency check must pass.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from crash_writer import METERS, T0, expected, received

from mbusgw.gateway.store import Store

CHILD = Path(__file__).with_name("crash_writer.py")
KILLS = 15


def run_and_kill(store: Path, rng: random.Random) -> list[int]:
    """Start the child, let it acknowledge at least one batch, kill it; the batches it acked."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(store)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=CHILD.parent,
    )
    try:
        first = child.stdout.readline()  # blocks until the first acknowledgement
        assert first.startswith("ACK "), f"child failed to start: {first!r}"
        time.sleep(rng.uniform(0.0, 0.6))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        # through the same reader: readline() may already hold the next lines in its buffer
        rest = child.stdout.read()
        child.stdout.close()
        child.wait(timeout=30)
    lines = [first, *rest.splitlines(keepends=True)]
    # a line cut off by the kill was not a complete acknowledgement
    return [
        int(line.split()[1]) for line in lines if line.startswith("ACK ") and line.endswith("\n")
    ]


def stored_batches(store: Store) -> dict[int, dict[int, list[object]]]:
    """batch -> meter -> values, rebuilt from the store (meter log included: failed readings)."""
    found: dict[int, dict[int, list[object]]] = {}
    for meter in range(METERS):
        name = f"m{meter}"
        if store.meter(name) is None:
            continue
        for entry in store.meter_log(name):
            number = (entry.received_at - T0) // 3600
            assert entry.received_at == received(number, meter)
            assert meter not in found.setdefault(number, {}), f"batch {number} stored twice"
            found[number][meter] = []
        series = {info.id: info.quantity for info in store.series(name)}
        order = ["energy", "volume", "flow_temperature", "fabrication_number"]
        tables = store.meter_values(name)
        by_quantity = {series[sid]: table for sid, table in tables.items()}
        for quantity in order:
            table = by_quantity.get(quantity)
            if table is None:
                continue
            for i, value in enumerate(table.values()):
                number = (int(table.received_at[i]) - T0) // 3600
                found[number][meter].append(value)
    return found


def test_acknowledged_batches_survive_sigkill(tmp_path) -> None:
    path = tmp_path / "store.mdb"
    rng = random.Random(20231115)
    acknowledged: set[int] = set()
    unacknowledged: set[int] = set()  # committed, but killed before it could say so
    for _ in range(KILLS):
        acknowledged.update(run_and_kill(path, rng))
        store = Store.open(path, readonly=True)
        try:
            assert store.problems() == []
            found = stored_batches(store)
            stats = store.stats()
        finally:
            store.close()
        missing = acknowledged - found.keys()
        assert not missing, f"acknowledged batches lost: {sorted(missing)[:10]}"
        for number, meters in found.items():
            assert sorted(meters) == list(range(METERS)), f"batch {number} stored in part"
            for meter, values in meters.items():
                assert values == expected(number, meter), (number, meter)
        # at most the one batch in flight at the kill went in without its acknowledgement
        surprise = found.keys() - acknowledged - unacknowledged
        assert len(surprise) <= 1
        unacknowledged |= surprise
    assert len(acknowledged) > KILLS
    assert stats.blocks > 0  # compaction ran (and was killed) along the way
