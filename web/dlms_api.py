"""The DLMS/COSEM server's status over REST and for the Integrations page (docs/dlms.md)."""

from __future__ import annotations

from typing import Any

from quart import Response

from mbusgw.web.errors import Conflict
from mbusgw.web.routes import gw, reply, route

SERVICE = "dlms"


def dlms_status() -> dict[str, Any] | None:
    """Where the server listens, its associations and requests (None: it is not running)."""
    found = gw().running_northbound.get(SERVICE)
    return found.status() if found is not None else None


@route("GET", "/dlms/status", "DLMS/COSEM server: where it listens, associations, requests",
       "dlms", response="DlmsStatus")  # fmt: skip
async def dlms_status_view() -> Response:
    status = dlms_status()
    if status is None:
        raise Conflict("the DLMS/COSEM service is not running")
    return reply(status)
