"""gzip for large API responses (a meter list of 512 meters is about a megabyte of JSON).

Only the API's JSON and CSV are compressed, and only when the client asks for gzip: pages are
left alone because they carry the session's CSRF token beside text a visitor can choose, the
case compression attacks (BREACH) feed on. Bodies below ``MIN_BYTES`` fit a few packets as
they are and are sent as they are.
"""

from __future__ import annotations

import gzip

from quart import Request, Response
from quart.wrappers.response import DataBody

MIN_BYTES = 1400  # about one packet
LEVEL = 5  # most of level 9's gain for a third of its time
COMPRESSED_TYPES = ("application/json", "text/csv")
PREFIXES = ("/api/", "/jsonrpc")


def wants_gzip(request: Request) -> bool:
    accepted = request.accept_encodings
    return accepted.quality("gzip") > 0 and request.path.startswith(PREFIXES)


async def compress(request: Request, response: Response) -> Response:
    """``response`` gzipped when worth it (see the module note); otherwise as it was."""
    response.vary.add("Accept-Encoding")
    if (
        not wants_gzip(request)
        or response.mimetype not in COMPRESSED_TYPES
        or "Content-Encoding" in response.headers
        or not isinstance(response.response, DataBody)  # streamed: sent as it comes
    ):
        return response
    body = await response.get_data(as_text=False)
    if len(body) < MIN_BYTES:
        return response
    response.set_data(gzip.compress(body, LEVEL, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    return response
