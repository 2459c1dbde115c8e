"""``mbusgw run``: the gateway, until SIGINT or SIGTERM.

The gateway's modules are imported when it runs, not when the command line is parsed, so
``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from mbusgw.gateway.settings import ConfigError, load_startup

if TYPE_CHECKING:
    from mbusgw.gateway.app import Gateway


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the gateway",
        description="Run the gateway. With no interface configured it runs on a built-in "
        "simulated M-Bus with meters on it.",
    )
    parser.add_argument("--config", type=Path, help="start-up file (TOML): interfaces, ports")
    parser.add_argument("--data-dir", type=Path, help="where the store lives (default: var)")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mbusgw.gateway.systemd import log_handler

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, handlers=[log_handler()]
    )
    try:
        startup = load_startup(args.config, data_dir=args.data_dir)
    except ConfigError as exc:
        for path, message in exc.errors.items():
            print(f"mbusgw: {path}: {message}")
        return 2
    import trio

    from mbusgw.gateway import heap
    from mbusgw.gateway.app import Gateway
    from mbusgw.gateway.lifecycle import apply_after_stop
    from mbusgw.gateway.malloc import fix_thresholds
    from mbusgw.gateway.owner import DataDirBusy

    fix_thresholds()  # large web answers must not stay resident (gateway/malloc.py)

    while True:
        gateway = Gateway(startup)
        busy: DataDirBusy | None = None
        try:
            trio.run(serve, gateway)
        except* DataDirBusy as group:
            busy = group.exceptions[0]  # type: ignore[assignment]
        finally:
            heap.release()
        if busy is not None:
            print(f"mbusgw: cannot start: {busy}; one gateway per data directory")
            return 1
        if gateway.after_stop is None:
            return 0
        note = apply_after_stop(gateway.after_stop, startup.data_dir)
        logging.getLogger("mbusgw").info("%s; starting again", note)


async def serve(gateway: Gateway) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, gateway)
        nursery.start_soon(_report_ready, gateway)
        await gateway.run()
        nursery.cancel_scope.cancel()


async def _report_ready(gateway: Gateway) -> None:
    """systemd's Type=notify: ready once the store is open and every service has started.
    What the start built lives as long as the run: it is left out of garbage collections."""
    from mbusgw.gateway import heap
    from mbusgw.gateway.systemd import notify

    await gateway.ready.wait()
    heap.settle()
    web = f"web on {gateway.startup.web_host}:{gateway.startup.web_port}, "
    notify(f"READY=1\nSTATUS={web}{len(gateway.active_meters())} active meter(s)")


async def _stop_on_signal(gateway: Gateway) -> None:
    import trio

    from mbusgw.gateway.systemd import notify

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logging.getLogger("mbusgw").info("%s: stopping", signal.Signals(signum).name)
            notify("STOPPING=1")
            gateway.stop()
