"""Resident memory of a running gateway: the libraries of services that are switched off are
not loaded (pymodbus, pysnmp with pyasn1, paho, dlms_cosem, and cryptography's X.509 without
HTTPS), freed
large buffers do not stay resident and threads share two arenas of the C allocator
(``gateway/malloc.py``). Each case runs in a fresh interpreter: this one has loaded them all."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

from mbusgw.core.records import decode
from mbusgw.gateway.simulator import default_meters
from mbusgw.gateway.store import SeriesNames, reading_from_telegrams
from mbusgw.web.plain import record_values

GATEWAY_WITH_SERVICES_OFF = """
import json, sys
from pathlib import Path
import trio
from mbusgw.gateway.app import Gateway
from mbusgw.gateway.settings import StartupConfig
from mbusgw.gateway.store import Store, store_path

data_dir = Path(sys.argv[1])
store = Store.open(store_path(data_dir))
store.update_settings({"modbus": {"enabled": False}})  # SNMP and MQTT are off by default
store.close()

async def main():
    gateway = Gateway(StartupConfig(data_dir, web_port=0))  # with the web, as ``mbusgw run``
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        loaded = sorted({name.split(".")[0] for name in sys.modules})
        x509 = "cryptography.x509" in sys.modules
        await gateway.update_settings(
            {"snmp": {"enabled": True, "port": 0}, "dlms": {"enabled": True, "port": 0}}
        )
        await trio.sleep(0.5)
        on = {"snmp_on": "pysnmp" in sys.modules, "dlms_on": "dlms_cosem" in sys.modules}
        print(json.dumps({"off": loaded, "x509": x509, **on}))
        gateway.stop()
        nursery.cancel_scope.cancel()

trio.run(main)
"""

FREED_BLOCKS = """
import re, sys
from mbusgw.gateway.malloc import fix_thresholds

def rss_kib():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))

if sys.argv[1] == "fixed":
    assert fix_thresholds()
big = bytearray(8 << 20)  # an 8 MiB block, freed: glibc raises its mmap threshold to it
del big
before = rss_kib()
blocks = [bytearray(1 << 20) for _ in range(40)]  # answers of a megabyte each
last = blocks[-1]  # still in use, above the others on the heap
del blocks
print(rss_kib() - before)
"""

THREAD_ARENAS = """
import ctypes, sys, threading
from mbusgw.gateway.malloc import fix_thresholds

if sys.argv[1] == "fixed":
    assert fix_thresholds()

all_alive = threading.Barrier(8)

def work():
    kept = [bytes(2000) for _ in range(200)]  # blocks of the C allocator, not of Python's
    all_alive.wait()  # as the bus threads of 8 lines: all at once

threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # "Arena N:" per arena, on stderr
"""


LATEST_VALUES_TEXTS = """
import sys
import numpy as np
from mbusgw.core.units import ValueKind
from mbusgw.gateway.store.model import SeriesInfo, ValueTable
from mbusgw.web.plain import plain
from mbusgw.web.values import LatestCache, SeriesCatalog

class Store:
    def series(self):
        return [SeriesInfo(k, f"m{k % 3}", b"", "energy", "Wh", "instantaneous") for k in range(9)]

rows = 9
table = ValueTable(
    np.arange(rows, dtype=np.uint32),
    np.full(rows, 1_765_000_000, np.int64),
    np.zeros(rows, np.int64),
    np.array([ValueKind.DECIMAL] * 8 + [ValueKind.REAL], np.uint8),  # two ways to write
    np.array([0, -1, -2, 0, -1, -2, 0, -1, 0], np.int8),  # several exponents
    np.zeros(rows, np.uint8),
    np.array([12345] * 8 + [np.float64(1.5).view(np.int64)], np.int64),
)
texts = LatestCache().update(SeriesCatalog(), Store(), table)
assert texts["m0"][0].count('"value":') == 3, texts
print("numpy.ma" in sys.modules)
"""


def run_python(code: str, *args: str) -> str:
    return run_python_both(code, *args)[0]


def run_python_both(code: str, *args: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def test_libraries_of_services_switched_off_are_not_loaded(tmp_path: Path) -> None:
    found = json.loads(run_python(GATEWAY_WITH_SERVICES_OFF, str(tmp_path)).splitlines()[-1])
    assert "mbusgw" in found["off"] and "quart" in found["off"]  # the gateway and its web ran
    assert not {"pymodbus", "pysnmp", "pyasn1", "paho", "dlms_cosem"} & set(found["off"])
    assert not found["x509"]  # plain HTTP: certificates are handled only when HTTPS is set up
    assert found["snmp_on"]  # switched on, the agent loads what it needs
    assert found["dlms_on"]


def test_freed_large_buffers_do_not_stay_resident() -> None:
    kept_by_default = int(run_python(FREED_BLOCKS, "default"))
    kept_when_fixed = int(run_python(FREED_BLOCKS, "fixed"))
    assert kept_by_default > 30 * 1024  # the case: 40 freed MiB held below the last block
    assert kept_when_fixed < 8 * 1024


def test_threads_share_two_arenas() -> None:
    by_default = run_python_both(THREAD_ARENAS, "default")[1].count("Arena ")
    when_fixed = run_python_both(THREAD_ARENAS, "fixed")[1].count("Arena ")
    assert by_default > 2  # the case: an arena for each thread (up to eight per core)
    assert when_fixed <= 2


def test_writing_the_latest_values_does_not_load_numpy_masked_arrays() -> None:
    """``np.unique`` imports ``numpy.ma`` (about 0.7 MB) on its first call: the latest values,
    written for every meter list and ``/values/latest``, do without it."""
    assert run_python(LATEST_VALUES_TEXTS).split() == ["False"]


def test_storing_a_reading_leaves_its_telegrams_without_a_list_of_their_records() -> None:
    """The telegrams of a stored reading live on in the continuous-read snapshot: looking up
    a series' name or a text value, or writing the live values, makes each record alone and
    keeps nothing on the telegram (a list of every record: about 0.7 MB for 512 meters)."""
    meters = default_meters(12, seed=3)
    telegrams = [decode(meter._user_data(0x7B, 0.0)) for meter in meters]
    names = SeriesNames()
    for telegram in telegrams:
        reading = reading_from_telegrams("m", (telegram,), 1_765_000_000, names=names)
        assert len(reading.series)
    assert record_values(telegrams)  # the live values of the API, written the same way
    assert not any(_holds_a_list(telegram) for telegram in telegrams)
    for telegram in telegrams:  # each record alone is the record of the whole list
        alone = [(r.quantity, r.unit, r.value) for r in map(telegram.record, range(len(telegram)))]
        assert alone == [(r.quantity, r.unit, r.value) for r in telegram.records]
    assert all(_holds_a_list(telegram) for telegram in telegrams)  # the list, once asked for


def _holds_a_list(telegram: object) -> bool:
    return any(isinstance(held, list) for held in gc.get_referents(telegram))
