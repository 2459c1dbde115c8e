"""gzip for large API responses (a meter list of 512 meters is about a megabyte of JSON).

Only the API's JSON and CSV are compressed, and only when the client asks for gzip: pages are
left alone because they carry the session's CSRF token beside text a visitor can choose, the
case compression attacks (BREACH) feed on. Bodies below ``MIN_BYTES`` fit a few packets as
they are and are sent as they are. The last few large answers are kept compressed by path: an
answer asked again unchanged (the latest values between two readings) is not compressed again.
"""

from __future__ import annotations

import gzip
from collections import OrderedDict

from quart import Request, Response
from quart.wrappers.response import DataBody

MIN_BYTES = 1400  # about one packet
LEVEL = 5  # most of level 9's gain for a third of its time
COMPRESSED_TYPES = ("application/json", "text/csv")
PREFIXES = ("/api/", "/jsonrpc")
KEPT_MIN_BYTES = 65536  # smaller answers compress in well under a millisecond
KEPT_ANSWERS = 4

_kept: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()  # path: (body, gzipped body)


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
    response.set_data(gzipped(request.path, body))
    response.headers["Content-Encoding"] = "gzip"
    return response


def gzipped(path: str, body: bytes) -> bytes:
    """``body`` gzipped; the same bytes as last time for an unchanged large answer."""
    kept = _kept.get(path)
    if kept is not None and kept[0] == body:
        _kept.move_to_end(path)
        return kept[1]
    data = gzip.compress(body, LEVEL, mtime=0)
    if len(body) >= KEPT_MIN_BYTES:
        _kept[path] = (body, data)
        _kept.move_to_end(path)
        while len(_kept) > KEPT_ANSWERS:
            _kept.popitem(last=False)
    return data
