"""Running under systemd: readiness (sd_notify) and log lines the journal keeps well.

``notify`` sends one datagram to the socket systemd names in ``NOTIFY_SOCKET`` (a path, or
``@name`` in the abstract namespace), as sd_notify(3) does; without it, it does nothing. The
protocol is this one datagram: no library is needed.

When standard error is the journal's stream (``JOURNAL_STREAM`` names its device and inode),
log lines start with the syslog priority (``<3>`` …), which journald takes as the entry's
level, and carry no timestamp of their own: the journal has one.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger("mbusgw.systemd")

# sd-daemon(3) levels of the Python ones
_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Tell systemd ``state`` (``READY=1``, ``STOPPING=1``, ``STATUS=…``, newline-separated).

    Returns whether it was sent. A failure to send is logged, never raised: the gateway runs on.
    """
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        logger.warning("NOTIFY_SOCKET %r is not a socket path: readiness not reported", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as error:
        logger.warning("cannot tell systemd %r: %s", state.split("\n", 1)[0], error)
        return False
    return True


def stderr_is_journal(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether standard error is connected to the journal (systemd.exec(5), JOURNAL_STREAM)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(2)
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


class JournalFormatter(logging.Formatter):
    """``<6>mbusgw.gateway: text``: the priority prefix journald reads, no timestamp."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        level = _PRIORITY.get(record.levelno, 3 if record.levelno > logging.WARNING else 6)
        text = super().format(record)
        # every line of a multi-line entry (a traceback) keeps the entry's level
        return "\n".join(f"<{level}>{line}" for line in text.split("\n"))


def log_handler() -> logging.Handler:
    """The standard-error handler: journal-friendly under systemd, timestamped otherwise."""
    handler = logging.StreamHandler()
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler
