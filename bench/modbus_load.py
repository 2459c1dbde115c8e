"""Modbus TCP load clients for bench_modbus, run as a separate process so that the clients and
the server do not share an interpreter.

``python -m bench.modbus_load PORT CLIENTS SECONDS RATE`` opens CLIENTS connections; each
reads 125 holding registers of one meter block again and again (``RATE`` requests per second
per client, or back to back when RATE is 0) for SECONDS, checks every answer, and prints one
JSON line: requests, errors, elapsed seconds and the response times in ms (p50, p99, max).
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time

HEADER = struct.Struct(">HHHB")


async def client(
    port: int, index: int, seconds: float, rate: float, latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    address = 125 * (index + 1)  # client i polls meter i + 1
    period = 1.0 / rate if rate else 0.0
    start = time.perf_counter()
    next_at = start + period * (index / 32)  # spread the paced clients over one period
    tid = 0
    try:
        while time.perf_counter() - start < seconds:
            if period:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += period
            tid = (tid + 1) & 0xFFFF
            sent = time.perf_counter()
            writer.write(HEADER.pack(tid, 0, 6, 1) + struct.pack(">BHH", 3, address, 125))
            head = await reader.readexactly(7)
            got_tid, _, length, _ = HEADER.unpack(head)
            body = await reader.readexactly(length - 1)
            latencies.append((time.perf_counter() - sent) * 1000)
            if got_tid != tid or body[:2] != b"\x03\xfa":
                errors.append(body[:2].hex())
    finally:
        writer.close()


async def main(port: int, clients: int, seconds: float, rate: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(client(port, i, seconds, rate, latencies, errors) for i in range(clients))
    )
    elapsed = time.perf_counter() - start
    latencies.sort()
    count = len(latencies)

    def pick(q: float) -> float:
        return round(latencies[min(count - 1, int(q * count))], 3) if count else float("nan")

    return {
        "requests": count,
        "errors": len(errors),
        "seconds": round(elapsed, 3),
        "rate": round(count / elapsed, 1),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": round(latencies[-1], 3) if count else float("nan"),
    }


if __name__ == "__main__":
    port_arg, clients_arg, seconds_arg, rate_arg = sys.argv[1:5]
    result = asyncio.run(main(int(port_arg), int(clients_arg), float(seconds_arg), float(rate_arg)))
    print(json.dumps(result))
