"""The 512-meter site (issue 21) as an installer meets it, everything over HTTP: ``mbusgw
simulate`` serves 8 lines x 64 meters at 2400 baud on loopback TCP, ``mbusgw run`` starts on an
empty data directory with the 8 converters, and then:

1. a primary search of every line with 512 meters expected (goal: all installed <= 75 s);
2. "read all" right after it (goal: ends <= 60 s later);
3. continuous mode on, and with it: ``/api/v1/values/latest`` (<= 20 ms), ``/api/v1/meters``
   (<= 50 ms), the ``/meters`` page (<= 100 ms), p50 of 10 each, API with a token (the page
   with a session); resident memory (<= 100 MB) and CPU while reading continuously.

``--lines``, ``--meters``, ``--baud`` size the site (``SMOKE_ARGV``: a tiny one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.memory import rss_split_mb

SMOKE_ARGV = ["--lines", "2", "--meters", "2", "--baud", "38400", "--samples", "2", "--settle", "0"]
ADMIN = ("engineer", "Install2024")
GOALS = {
    "search_s": 75.0,
    "first_read_s": 60.0,
    "latest_ms": 20.0,
    "meters_api_ms": 50.0,
    "meters_page_ms": 100.0,
    "rss_mb": 100.0,
}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mbusgw.gateway.cli", *args]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _process(command: list[str], **options: object) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(command, **options)  # type: ignore[call-overload]
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _config(data_dir: Path, port: int, lines: list[dict], baud: int) -> str:
    text = f'data_dir = "{data_dir}"\n\n[web]\nhost = "127.0.0.1"\nport = {port}\n'
    for line in lines:
        host, line_port = line["tcp"].rsplit(":", 1)
        text += (
            f'\n[[interfaces]]\nname = "line{line["line"] + 1}"\nkind = "tcp"\n'
            f'host = "{host}"\nport = {line_port}\nbaud = {baud}\n'
        )
    return text


def _wait_job(http: httpx.Client, job_id: str, auth: dict, limit_s: float) -> dict:
    ends = time.monotonic() + limit_s
    while time.monotonic() < ends:
        job = http.get(f"/api/v1/jobs/{job_id}", headers=auth).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still running after {limit_s:.0f} s")


def _p50_ms(call: Callable[[], httpx.Response], samples: int) -> tuple[float, int]:
    """The median time of ``samples`` calls (after one to warm up) and the last body's size
    as sent."""
    call()
    times = []
    size = 0
    for _ in range(samples):
        begun = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - begun) * 1000)
        assert response.status_code == 200, response.text[:200]
        size = int(response.headers.get("Content-Length") or len(response.content))
    return statistics.median(times), size


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sign_in(http: httpx.Client) -> None:
    """A browser's session for the page (the login form and its CSRF token)."""
    token = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/login").text)
    assert token, "no login form"
    signed = http.post(
        "/login",
        data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token.group(1)},
    )
    assert signed.status_code == 303, signed.text[:200]


def run_site(lines: int, meters: int, baud: int, samples: int, settle: float) -> dict:
    total = lines * meters
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, port = Path(tmp) / "data", _free_port()
        simulate = _cli(
            "simulate", "--tcp", "127.0.0.1:0", "--lines", str(lines), "--meters", str(meters)
        )
        simulate += ["--baud", str(baud)]
        with _process(
            simulate, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        ) as sim:
            assert sim.stdout is not None
            served = [json.loads(sim.stdout.readline()) for _ in range(lines)]
            config = Path(tmp) / "site.toml"
            config.write_text(_config(data_dir, port, served, baud))
            with _process(_cli("run", "--config", str(config), "--quiet")) as gateway:
                return _drive(gateway.pid, port, total, samples, settle)


def _drive(pid: int, port: int, total: int, samples: int, settle: float) -> dict:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        for _ in range(300):
            try:
                http.get("/api/v1/openapi.json")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        first = http.post(
            "/api/v1/me/password",
            auth=("admin", "admin"),
            json={"current_password": "admin", "new_username": ADMIN[0], "new_password": ADMIN[1]},
        )
        assert first.status_code == 200, first.text
        made = http.post("/api/v1/me/tokens", auth=ADMIN, json={"label": "bench"})
        auth = {"Authorization": f"Bearer {made.json()['token']}"}
        quiet = {"reading": {"read_at_start": False, "schedule": "0 0 1 1 *"}}
        assert http.patch("/api/v1/settings", headers=auth, json=quiet).status_code == 200

        begun = time.monotonic()
        started = http.post(
            "/api/v1/scans", headers=auth, json={"kind": "primary", "expected": total}
        )
        assert started.status_code == 202, started.text
        search = _wait_job(http, started.json()["id"], auth, 1800)
        search_s = time.monotonic() - begun
        listing = http.get("/api/v1/meters?fields=key,interface", headers=auth).json()

        begun = time.monotonic()
        read = http.post("/api/v1/values/read", headers=auth)
        read_job = _wait_job(http, read.json()["id"], auth, 1800)
        first_read_s = time.monotonic() - begun

        on = {"reading": {"continuous": True}}
        assert http.patch("/api/v1/settings", headers=auth, json=on).status_code == 200
        time.sleep(settle)
        cpu_before, cpu_begun = _cpu_s(pid), time.monotonic()
        latest_ms, latest_b = _p50_ms(
            lambda: http.get("/api/v1/values/latest", headers=auth), samples
        )
        api_ms, api_b = _p50_ms(lambda: http.get("/api/v1/meters", headers=auth), samples)
        paged_ms, paged_b = _p50_ms(
            lambda: http.get("/api/v1/meters?limit=100", headers=auth), samples
        )
        _sign_in(http)
        page_ms, page_b = _p50_ms(lambda: http.get("/meters"), samples)
        time.sleep(max(0.0, 2 * settle - (time.monotonic() - cpu_begun)))  # CPU over >= 10 s
        cpu = (_cpu_s(pid) - cpu_before) / (time.monotonic() - cpu_begun) * 100
        rss = _rss_mb(pid)
        split = rss_split_mb(pid)
        live = http.get("/api/v1/values/live", headers=auth).json()
    return {
        "meters": total,
        "search_s": round(search_s, 1),
        "search_state": search["state"],
        "installed": len(listing["meters"]),
        "search_message": search["message"],
        "first_read_s": round(first_read_s, 1),
        "read_message": read_job["message"],
        "latest_ms": round(latest_ms, 1),
        "latest_bytes": latest_b,
        "meters_api_ms": round(api_ms, 1),
        "meters_api_bytes": api_b,
        "meters_api_page_ms": round(paged_ms, 1),
        "meters_api_page_bytes": paged_b,
        "meters_page_ms": round(page_ms, 1),
        "meters_page_bytes": page_b,
        "rss_mb": round(rss, 1),
        "rss_anon_mb": split["anon"],
        "rss_file_mb": split["file"],
        "cpu_percent": round(cpu, 1),
        "live_meters": len(live.get("meters", live)) if isinstance(live, dict) else len(live),
    }


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench site")
    parser.add_argument("--lines", type=int, default=8)
    parser.add_argument("--meters", type=int, default=64)
    parser.add_argument("--baud", type=int, default=2400)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds of continuous mode before measuring"
    )
    args, _ = parser.parse_known_args(argv)
    result = run_site(args.lines, args.meters, args.baud, args.samples, args.settle)
    print(f"site: {args.lines} lines x {args.meters} meters at {args.baud} baud, over HTTP")
    for name, value in result.items():
        goal = GOALS.get(name)
        mark = (
            "" if goal is None else f"  (goal <= {goal:g}: {'ok' if value <= goal else 'MISSED'})"
        )
        print(f"  {name:<22} {value}{mark}")
    return result
