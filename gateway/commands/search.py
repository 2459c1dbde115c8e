"""``mbusgw search``: scan the configured lines and install the meters found."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.search import SearchJob, SearchRequest
from mbusgw.gateway.settings import ConfigError, load_startup


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="find meters on the configured lines and install them",
        description="Automatic/advanced search (the gateway must not be running on this store).",
    )
    parser.add_argument("--mode", choices=("primary", "secondary"), default="secondary")
    parser.add_argument("--interface", action="append", default=[], help="only this line")
    parser.add_argument("--baud", type=int, action="append", default=[], help="scan at this rate")
    parser.add_argument("--hex", action="store_true", help="IDs may contain the digits A-E")
    parser.add_argument(
        "--expected", type=int, help="how many meters to find: stop once found, warn if fewer"
    )
    parser.add_argument("--no-install", action="store_true", help="only list what is found")
    parser.add_argument("--config", type=Path, help="start-up file (TOML) with the interfaces")
    parser.add_argument("--data-dir", type=Path, help="where the store lives (default: var)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        startup = load_startup(args.config, data_dir=args.data_dir)
        request = SearchRequest(
            args.mode,
            tuple(args.interface),
            tuple(args.baud),
            args.hex,
            args.expected,
            not args.no_install,
        )
    except (ConfigError, ValueError) as exc:
        print(f"mbusgw: {exc}", file=sys.stderr)
        return 2
    job = trio.run(_search, Gateway(startup, background=False), request)
    for found in job.found:
        identity = found.identity
        print(
            f"{identity.id} {identity.manufacturer} v{identity.version} medium {identity.medium}"
            f" on {found.interface} at {found.baud} baud"
            + (f", primary {found.primary}" if found.primary is not None else "")
        )
    if job.warning:
        print(f"warning: {job.warning}", file=sys.stderr)
    if job.error:
        print(f"mbusgw: search failed: {job.error}", file=sys.stderr)
        return 1
    print(f"{len(job.found)} meter(s) found, {job.installed} newly installed")
    return 0


async def _search(gateway: Gateway, request: SearchRequest) -> SearchJob:
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        job = SearchJob(request, gateway.clock.now())
        nursery.start_soon(_show_progress, job)
        await gateway.search(request, job)
        gateway.stop()
    return job


async def _show_progress(job: SearchJob) -> None:
    while not job.done_event.is_set():
        state = job.as_dict()
        eta = f", about {state['eta_s']:.0f} s left" if state["eta_s"] is not None else ""
        print(
            f"\r{state['done'] * 100:5.1f} %  {state['found']} found, "
            f"{state['probes']} probes{eta}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        with trio.move_on_after(0.5):
            await job.done_event.wait()
    print(file=sys.stderr)
