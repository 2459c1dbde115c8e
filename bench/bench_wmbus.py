"""Wireless M-Bus: decrypt + decode time per mode 5 telegram (goal: at most 10 µs).

Workloads on the OMS Vol. 2 Annex N.2.1 telegram (mode 5, AES-128-CBC, 2 encrypted blocks):

* ``link+decrypt`` — CRC check/strip, DLL/TPL headers, decryption and 2F2F check, with a key
  object whose OpenSSL context is cached;
* ``decoder`` — the same through the stateful ``WirelessDecoder`` with a key store lookup,
  per-meter key cache and diagnosis counts, and the application layer through the record
  decoder (what the receiver service runs); ``+ values`` also builds every record's value;
* ``naive-cipher`` — a fresh ``cryptography`` CBC cipher object per telegram, the usual way of
  calling the library, to show what the cached context saves.

There is no wireless M-Bus peer among the installed Python packages, so the ratios compare our
hot path with the naive use of the same library.
"""

from __future__ import annotations

import argparse
import timeit
from decimal import Decimal
from functools import partial

import trio
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mbusgw.core.crypto import AesKey
from mbusgw.core.wireless_decoder import WirelessDecoder
from mbusgw.core.wmbus import add_crc_format_a, decode_wireless
from mbusgw.gateway.keys import KeyStore

TELEGRAM = bytes.fromhex(
    "2E4493157856341233037A2A0020255923C95AAA26D1B2E7493B013EC4A6F6D3529B520EDFF0EA6DEFC99D6D69EBF3"
)
KEY = "0102030405060708090A0B0C0D0E0F11"
GOAL_US = 10.0
SMOKE_ARGV = ["--repeat=1", "--budget=0.005"]


def per_call_us(func, repeat: int = 5, budget: float = 0.2) -> float:
    """Best of ``repeat`` runs, each long enough to be measured (µs per call)."""
    timer = timeit.Timer(func)
    number, elapsed = timer.autorange()
    number = max(1, int(number * budget / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def naive_decrypt() -> bytes:
    iv = TELEGRAM[2:10] + bytes((TELEGRAM[11],)) * 8
    decryptor = Cipher(algorithms.AES(bytes.fromhex(KEY)), modes.CBC(iv)).decryptor()
    plain = decryptor.update(TELEGRAM[15:47]) + decryptor.finalize()
    assert plain[:2] == b"\x2f\x2f"
    return plain


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench_wmbus")
    parser.add_argument("--repeat", type=int, default=5, help="runs per workload (best is kept)")
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per run")
    args, _ = parser.parse_known_args(argv)
    timed = partial(per_call_us, repeat=args.repeat, budget=args.budget)
    key = AesKey(KEY)
    framed = add_crc_format_a(TELEGRAM)
    store = KeyStore()
    trio.run(partial(store.add, KEY, address="12345678"))  # a change is saved, so it is async
    decoder = WirelessDecoder(keys=store)
    assert decode_wireless(TELEGRAM, keys=key).payload[:2] == b"\x2f\x2f"
    assert decoder.decode(framed).application.records[0].value == Decimal("28504.27")

    results = {
        "link+decrypt (stripped)": timed(lambda: decode_wireless(TELEGRAM, keys=key)),
        "link+decrypt (format A CRCs)": timed(lambda: decode_wireless(framed, keys=key)),
        "decoder + key store (format A)": timed(lambda: decoder.decode(framed)),
        "decoder + key store + values": timed(
            lambda: [r.value for r in decoder.decode(framed).application.records]
        ),
        "naive-cipher decrypt only": timed(naive_decrypt),
    }
    naive = results["naive-cipher decrypt only"]
    print(f"{'workload (mode 5, 47-byte telegram)':40} {'µs/telegram':>12} {'vs naive':>9}")
    for name, micros in results.items():
        print(f"{name:40} {micros:12.2f} {micros / naive:8.2f}x")
    best = results["decoder + key store + values"]
    verdict = "met" if best <= GOAL_US else "NOT met"
    print(f"goal ≤ {GOAL_US:g} µs per telegram: {verdict} ({best:.2f} µs with every value)")
    return {"us_per_telegram": results, "goal_us": GOAL_US}
