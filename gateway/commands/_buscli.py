"""What the bus commands (scan, read) share: the line options, a progress bar on standard
error (redrawn in place on a terminal, a plain line every few seconds otherwise), and running
the command with its errors reported in one line each."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO

from mbusgw.gateway.errors import BusError
from mbusgw.gateway.settings import ConfigError

if TYPE_CHECKING:
    from mbusgw.gateway.bustiming import Timing
    from mbusgw.gateway.transport import Transport


def add_line_arguments(parser: argparse.ArgumentParser, *, several: bool) -> None:
    action = "append" if several else "store"
    parser.add_argument("--port", action=action, metavar="DEVICE", help="serial port")
    parser.add_argument("--tcp", action=action, metavar="HOST:PORT", help="M-Bus/TCP converter")
    parser.add_argument(
        "--response-timeout",
        type=float,
        metavar="MS",
        help="response timeout in ms (default: 330 bit times + 50 ms)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=15.0,
        metavar="MS",
        help="extra wait for converter/USB latency in ms (default 15)",
    )


def timing_from(args: argparse.Namespace) -> Timing:
    from mbusgw.gateway.bustiming import Timing

    timeout = None if args.response_timeout is None else args.response_timeout / 1000
    return Timing(response_timeout=timeout, latency=args.latency / 1000)


def open_lines(args: argparse.Namespace, baud: int) -> list[Transport]:
    from mbusgw.gateway.transport import parse_host_port, serial_line, tcp_line

    ports = args.port if isinstance(args.port, list) else [args.port] if args.port else []
    tcps = args.tcp if isinstance(args.tcp, list) else [args.tcp] if args.tcp else []
    lines: list[Transport] = [serial_line(device, baud) for device in ports]
    for text in tcps:
        host, port = parse_host_port(text)
        lines.append(tcp_line(host, port, baud))
    if not lines:
        raise ConfigError({"line": "give a serial --port or a --tcp HOST:PORT"})
    return lines


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def run_reported(
    name: str, bar: ProgressBar, command: Callable[..., Awaitable[Any]], *args: Any
) -> tuple[Any, int]:
    """``trio.run(command, *args)``; bus and settings errors become a message on standard
    error and the exit status (1 for the bus, 2 for settings), anything else propagates."""
    import trio

    try:
        return trio.run(command, *args), 0
    except (BaseExceptionGroup, BusError, ConfigError) as error:
        bar.close()
        leaves = _leaves(error)
        if not all(isinstance(leaf, BusError | ConfigError) for leaf in leaves):
            raise
        for leaf in leaves:
            print(f"{name}: {leaf}", file=sys.stderr)
        return None, 2 if any(isinstance(leaf, ConfigError) for leaf in leaves) else 1
    finally:
        bar.close()


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._width = width
        self._shown_at = -1e9
        self._line = ""  # the latest state
        self._shown = ""  # what was last written

    def update(self, done: float, text: str, eta: float | None = None) -> None:
        done = min(max(done, 0.0), 1.0)
        filled = int(self._width * done + 1e-9)
        bar = "#" * filled + "." * (self._width - filled)
        self._line = f"[{bar}] {100 * done:5.1f}%  {text}  left {_clock(eta)}"
        if time.monotonic() - self._shown_at >= (0.1 if self._tty else 5.0):
            self._show()

    def _show(self) -> None:
        self._shown_at = time.monotonic()
        self._shown = self._line
        self._stream.write(("\r" + self._line + "\x1b[K") if self._tty else self._line + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Show the final state if it was not shown yet, and end the line."""
        if self._line and self._line != self._shown:
            self._show()
        if self._tty and self._line:
            self._stream.write("\n")
            self._stream.flush()
        self._line = self._shown = ""
