"""What the system log records of the web's use: sign-ins (refused ones too) with the client's
address, account and role changes, and who did them. Never a password, a token's secret or a
setting's value: only names and what changed."""

from __future__ import annotations

from collections.abc import Callable

from quart import g, has_request_context, request

from mbusgw.gateway.facade import INFO

Log = Callable[[int, str, str], None]  # ``SystemLog.log``: level, origin, text
ORIGIN = "access"
MAX_NAME = 64  # a refused sign-in's user name is the client's text: shown short and quoted


def who() -> str:
    """ " by NAME from ADDRESS" inside a request (the acting account, the client), else ""."""
    if not has_request_context():
        return ""
    user = g.get("user")
    by = f" by {user.name}" if user is not None else ""
    return f"{by} from {request.remote_addr or 'an unknown address'}"


def quoted(name: str) -> str:
    return repr(name[:MAX_NAME] + ("…" if len(name) > MAX_NAME else ""))


def record(log: Log | None, text: str, level: int = INFO) -> None:
    """``text`` and who did it, in the system log (nothing without a log: tools, tests)."""
    if log is not None:
        log(level, ORIGIN, text + who())
