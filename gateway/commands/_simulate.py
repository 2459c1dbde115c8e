"""The work of ``mbusgw simulate`` (the command and its options: ``simulate.py``), imported only
when the command runs."""

from __future__ import annotations

import argparse
import json
import signal
import sys

import trio

from mbusgw.gateway.simulator import (
    SimLine,
    SimMeter,
    default_meters,
    make_meter,
    random_ids,
    scan_population,
    serve_pty,
    serve_tcp,
)
from mbusgw.gateway.transport import parse_host_port


def build_meters(args: argparse.Namespace, line: int) -> list[SimMeter]:
    seed = args.seed * 1000 + line
    if args.population == "default":
        meters = default_meters(args.meters, seed=seed)
    elif args.population == "median":
        meters = scan_population(args.meters, seed=seed, answer_jitter=0.0)
        for address, meter in enumerate(meters, start=1):
            meter.primary = address if address <= 250 else None
    else:
        meters = scan_population(args.meters, seed=seed, style=args.population, hex_digits=args.hex)
    if args.delay is not None:
        for meter in meters:
            meter.answer_delay = args.delay
    by_address = {m.primary: m for m in meters if m.primary is not None}
    for address in args.silent:
        by_address[address].silent = True
    for spec in args.slow:
        address, _, seconds = spec.partition(":")
        by_address[int(address)].extra_delay = float(seconds)
    taken = {m.identity.id for m in meters}
    spare = (i for i in random_ids(len(meters) + 8, seed=seed + 7) if i not in taken)
    for address in args.duplicate:
        if address not in by_address:
            raise KeyError(address)
        meters.append(
            make_meter("kamstrup_382_005", next(spare), primary=address, seed=seed + address)
        )
    return meters


def describe(index: int, line: SimLine) -> str:
    rows = [f"line {index}: {len(line.meters)} meters at {line.baud} baud"]
    for m in line.meters:
        ident = m.identity
        primary = "-" if m.primary is None else str(m.primary)
        rows.append(
            f"  {primary:>3} {ident.id} {ident.manufacturer} v{ident.version} "
            f"medium 0x{ident.medium:02X} {m.telegrams} telegram(s) {m.template.name}"
        )
    return "\n".join(rows)


async def serve(args: argparse.Namespace, lines: list[SimLine]) -> None:
    host, first_port = parse_host_port(args.tcp)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for k, line in enumerate(lines):
                info = {"line": k, "baud": line.baud, "meters": len(line.meters)}
                if args.pty:
                    info["pty"] = await nursery.start(serve_pty, line)
                else:
                    port = await nursery.start(
                        serve_tcp, line, host, first_port + k * bool(first_port)
                    )
                    info["tcp"] = f"{host}:{port}"
                print(describe(k, line), file=sys.stderr)
                print(json.dumps(info), flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def simulate(args: argparse.Namespace) -> int:
    if args.lines < 1 or args.meters < 1:
        print("simulate: --lines and --meters must be at least 1", file=sys.stderr)
        return 2
    try:
        lines = [
            SimLine(build_meters(args, k), args.baud, echo=args.echo, name=f"sim{k}", seed=k)
            for k in range(args.lines)
        ]
    except KeyError as exc:
        print(f"simulate: no meter at primary address {exc}", file=sys.stderr)
        return 2
    trio.run(serve, args, lines)
    stats = {line.name: line.stats.as_dict() for line in lines}
    text = json.dumps(stats, indent=2)
    if args.stats:
        args.stats.write_text(text + "\n")
    else:
        print(text, flush=True)
    return 0
