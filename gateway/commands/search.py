"""``mbusgw search``: scan the configured lines and install the meters found; with ``--mode
wireless``, listen to the configured receivers and install the meters heard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mbusgw.gateway.settings import ConfigError, load_startup

if TYPE_CHECKING:
    from mbusgw.gateway.app import Gateway
    from mbusgw.gateway.search import SearchJob, SearchRequest


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="find meters on the configured lines and install them",
        description="Automatic/advanced search (refused while a gateway runs on the data "
        "directory: search through it then).",
    )
    parser.add_argument("--mode", choices=("primary", "secondary", "wireless"), default="secondary")
    parser.add_argument(
        "--listen", type=float, default=120.0, help="wireless: seconds to listen (default 120)"
    )
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
    # the gateway's modules load here, not while the command line is parsed (--help stays fast)
    import trio

    from mbusgw.gateway.app import Gateway
    from mbusgw.gateway.search import SearchRequest

    try:
        startup = load_startup(args.config, data_dir=args.data_dir)
        if args.mode == "wireless":
            return _wireless(Gateway(startup, background=False), args)
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
    from mbusgw.gateway.owner import DataDirBusy

    busy: DataDirBusy | None = None
    try:
        job = trio.run(_search, Gateway(startup, background=False), request)
    except* DataDirBusy as group:
        busy = group.exceptions[0]  # type: ignore[assignment]
    if busy is not None:
        print(
            f"mbusgw: refused: {busy}; it owns the lines and the meter list: search through "
            "it (its Search page, or POST /api/v1/scans), or stop it first",
            file=sys.stderr,
        )
        return 1
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
    print(
        f"{len(job.found)} meter(s) found, {job.installed} newly installed, "
        f"{len(job.already_installed)} already installed"
    )
    return 0


async def _search(gateway: Gateway, request: SearchRequest) -> SearchJob:
    import trio

    from mbusgw.gateway.search import SearchJob

    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        job = SearchJob(request, gateway.clock.now())
        nursery.start_soon(_show_progress, job)
        await gateway.search(request, job)
        gateway.stop()
    return job


async def _show_progress(job: SearchJob) -> None:
    import trio

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


def _wireless(gateway: Gateway, args: argparse.Namespace) -> int:
    import trio

    if not any(config.wireless for config in gateway.interfaces):
        print("mbusgw: no wireless M-Bus receiver is configured (--config)", file=sys.stderr)
        return 2
    if not 1 <= args.listen <= 86_400:
        print("mbusgw: --listen takes 1 to 86400 seconds", file=sys.stderr)
        return 2
    result = trio.run(_listen, gateway, args.listen, not args.no_install)
    for meter in result["meters"]:
        print(
            f"{meter['id']} {meter['manufacturer']} v{meter['version']} "
            f"type {meter['device_type']} (wireless)"
        )
    if args.expected is not None and result["found"] < args.expected:
        print(
            f"warning: {args.expected} meter(s) expected, {result['found']} heard", file=sys.stderr
        )
    print(f"{result['found']} meter(s) heard, {result['installed']} newly installed")
    return 0


async def _listen(gateway: Gateway, seconds: float, install: bool) -> dict:
    import trio

    def progress(done: float, found: int) -> None:
        print(f"\r{done * 100:5.1f} %  {found} heard   ", end="", file=sys.stderr, flush=True)

    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        result = await gateway.search_wireless(seconds, install=install, progress=progress)
        print(file=sys.stderr)
        gateway.stop()
    return result
