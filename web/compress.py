"""gzip for large API responses (a meter list of 512 meters is about a megabyte of JSON).

Only the API's JSON and CSV are compressed, and only when the client asks for gzip: pages are
left alone because they carry the session's CSRF token beside text a visitor can choose, the
case compression attacks (BREACH) feed on. Bodies below ``MIN_BYTES`` fit a few packets as
they are and are sent as they are. The last few large answers are kept compressed by path: an
answer asked again unchanged (the latest values between two readings) is not compressed again.

An answer made of many parts that change one at a time (the meter list while meters are read
continuously) is compressed by ``PartsGzip`` a group of parts at a time, each group a deflate
segment of its own that is kept while its parts stay the very same strings: a request
compresses only the groups with a changed part, and a page of meters only the page's groups.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from collections import OrderedDict
from collections.abc import Sequence

from quart import Request, Response
from quart.wrappers.response import DataBody

MIN_BYTES = 1400  # about one packet
LEVEL = 5  # most of level 9's gain for a third of its time
COMPRESSED_TYPES = ("application/json", "text/csv")
PREFIXES = ("/api/", "/jsonrpc")
KEPT_MIN_BYTES = 65536  # smaller answers compress in well under a millisecond
KEPT_ANSWERS = 4

# path: (digest of the body, gzipped body); the digest, not the body: a megabyte less to hold
_kept: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()


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
    if len(body) < KEPT_MIN_BYTES:
        return gzip.compress(body, LEVEL, mtime=0)
    digest = hashlib.blake2b(body, digest_size=32).digest()
    kept = _kept.get(path)
    if kept is not None and kept[0] == digest:
        _kept.move_to_end(path)
        return kept[1]
    data = gzip.compress(body, LEVEL, mtime=0)
    _kept[path] = (digest, data)
    _kept.move_to_end(path)
    while len(_kept) > KEPT_ANSWERS:
        _kept.popitem(last=False)
    return data


Part = tuple[str, ...]
"""A part of an answer as the texts it is made of, in order: a part may hold a text that
something else keeps (a meter's latest values) instead of a copy of it."""

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, mtime 0
FINAL_BLOCK = b"\x03\x00"  # an empty last block: ends the deflate stream
GROUP = 32  # parts per segment: large enough to compress as well as the whole answer


def _segment(text: str) -> bytes:
    """``text`` as a raw deflate segment that ends on a byte boundary and does not end the
    stream (a sync flush), so that segments written one after another form one valid stream."""
    packer = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(text.encode()) + packer.flush(zlib.Z_SYNC_FLUSH)


def joined(parts: Sequence[Part]) -> str:
    """The parts' text, separated by commas."""
    return ",".join(map("".join, parts))


class PartsGzip:
    """The gzip of ``head + joined(parts) + tail``, from deflate segments of ``GROUP``
    parts kept between calls (see the module note): those of the last answer, so one is kept
    for each kind of answer asked in turn (a page, the whole list)."""

    def __init__(self) -> None:
        # (first group of the answer, its parts): its segment (the others begin with a comma)
        self._kept: dict[tuple[bool, tuple[Part, ...]], bytes] = {}
        self.compressed_groups = 0  # segments written (not found kept): for the tests

    def gzipped(self, head: str, parts: Sequence[Part], tail: str) -> bytes:
        kept: dict[tuple[bool, tuple[Part, ...]], bytes] = {}
        out = [GZIP_HEADER, _segment(head)]
        for start in range(0, len(parts), GROUP):
            key = (start == 0, tuple(parts[start : start + GROUP]))
            # tuples and strings compare by identity first: a kept part is found without
            # reading it
            data = self._kept.get(key)
            if data is None:
                data = _segment(("," if start else "") + joined(key[1]))
                self.compressed_groups += 1
            kept[key] = data
            out.append(data)
        out.append(_segment(tail))
        out.append(FINAL_BLOCK)
        body = (head + joined(parts) + tail).encode()
        out.append(struct.pack("<II", zlib.crc32(body), len(body) & 0xFFFFFFFF))
        self._kept = kept
        return b"".join(out)
