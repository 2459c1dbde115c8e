"""Wireless M-Bus receivers: IMST iM871A, Amber AMB8465, and hex lines over TCP or stdin.

``make_receiver(spec)`` builds one from a short description:

* ``im871a:/dev/ttyUSB0`` (57600 baud), ``amb8465:/dev/ttyUSB1`` (9600 baud), an optional
  ``@baudrate`` suffix on the path;
* ``tcp:HOST:PORT`` — hex lines from a TCP server (rtl-wmbus behind ``nc -l`` or similar);
* ``stdin`` — hex lines from standard input.
"""

from __future__ import annotations

from mbusgw.gateway.receivers.amb8465 import Amb8465Receiver
from mbusgw.gateway.receivers.base import (
    LINK_MODES,
    RadioFrame,
    Receiver,
    ReceiverError,
    parse_link_mode,
)
from mbusgw.gateway.receivers.im871a import Im871aReceiver
from mbusgw.gateway.receivers.lines import serial_opener, stdin_opener, tcp_opener
from mbusgw.gateway.receivers.rawhex import RawHexReceiver

DEFAULT_BAUDRATES = {"im871a": 57600, "amb8465": 9600}

__all__ = [
    "LINK_MODES",
    "Amb8465Receiver",
    "Im871aReceiver",
    "RadioFrame",
    "RawHexReceiver",
    "Receiver",
    "ReceiverError",
    "make_receiver",
    "parse_link_mode",
]


def make_receiver(spec: str, *, name: str | None = None, link_mode: str = "T1+C1") -> Receiver:
    """A receiver from ``kind:where`` (see the module docstring); ValueError when malformed."""
    kind, _, where = spec.partition(":")
    kind = kind.lower()
    name = name or spec
    if kind in DEFAULT_BAUDRATES:
        if not where:
            raise ValueError(f"{spec!r}: give the serial device, e.g. {kind}:/dev/ttyUSB0")
        path, _, speed = where.partition("@")
        try:
            baudrate = int(speed) if speed else DEFAULT_BAUDRATES[kind]
        except ValueError:
            raise ValueError(f"{spec!r}: the baud rate {speed!r} is not a number") from None
        opener = serial_opener(path, baudrate)
        if kind == "im871a":
            return Im871aReceiver(name, opener, link_mode)
        return Amb8465Receiver(name, opener, link_mode)
    if kind == "tcp":
        host, _, port = where.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{spec!r}: write tcp:HOST:PORT")
        return RawHexReceiver(name, tcp_opener(host.strip("[]"), int(port)))
    if kind == "stdin" and not where:
        return RawHexReceiver(name, stdin_opener(), restartable=False)
    raise ValueError(
        f"{spec!r}: a receiver is im871a:DEVICE, amb8465:DEVICE, tcp:HOST:PORT or stdin"
    )
