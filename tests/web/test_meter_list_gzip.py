"""``GET /api/v1/meters`` gzipped from kept segments, over real HTTP: a meter whose reading
changes costs the compression of its own group of meters, an unchanged answer none, a page
only the page's groups; every answer is the gzip of the list written afresh."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import trio
from webrig import SERVED_ADMIN, install_flats, served_gateway

from mbusgw.core.jsonout import dumps
from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.settings import InterfaceConfig
from mbusgw.web import compress
from mbusgw.web.compress import GROUP, PartsGzip, gzipped
from mbusgw.web.meterlist import _caches
from mbusgw.web.operations import list_meters

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=2)
GZIP = {"Accept-Encoding": "gzip"}


def test_segments_joined_are_the_gzip_of_the_whole_text() -> None:
    packer = PartsGzip()
    texts = [json.dumps({"key": f"m{i}", "note": "é" * (i % 7)}) for i in range(GROUP * 3 + 5)]
    parts = [(text[:-1], "", "}") for text in texts]  # a part is the texts it is made of
    text = '{"meters":[' + ",".join(texts) + '],"total":101}'
    first = packer.gzipped('{"meters":[', parts, '],"total":101}')
    assert gzip.decompress(first).decode() == text and packer.compressed_groups == 4
    parts[GROUP + 1] = ('{"key":"changed"}',)
    second = packer.gzipped('{"meters":[', parts, '],"total":101}')
    assert packer.compressed_groups == 5  # the changed part's group alone
    assert json.loads(gzip.decompress(second))["meters"][GROUP + 1] == {"key": "changed"}
    assert gzip.decompress(packer.gzipped('{"meters":[', [], "]}")) == b'{"meters":[]}'


async def raw_gzip(http: httpx.AsyncClient, path: str) -> bytes:
    """The answer's body as sent (httpx would decode it)."""
    async with http.stream("GET", path, auth=SERVED_ADMIN, headers=GZIP) as answer:
        assert answer.status_code == 200 and answer.headers["content-encoding"] == "gzip"
        return b"".join([part async for part in answer.aiter_raw()])


async def test_a_changed_meter_recompresses_its_group_only(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, LINE) as (gateway, http):
            await install_flats(http, range(100, 200))
            await gateway.read_all(gateway.meters[:2])  # the simulated meters have values
            first = await raw_gzip(http, "/api/v1/meters")
            pages = _caches[gateway.store].pages

            def compressed() -> int:
                return sum(packer.compressed_groups for _, packer in pages.values())

            groups = compressed()
            assert groups == -(-len(gateway.meters) // GROUP)
            assert gzip.decompress(first).decode() == dumps(list_meters(gateway))

            again = await raw_gzip(http, "/api/v1/meters")
            assert again == first and compressed() == groups  # nothing changed

            # one meter fails a reading: its group alone is compressed again
            changed = gateway.meters[GROUP + 3].key
            health = gateway.health.setdefault(changed, MeterHealth(changed))
            health.record(datetime(2026, 12, 7, 1, tzinfo=UTC), False, error="no reply")
            later = await raw_gzip(http, "/api/v1/meters")
            assert compressed() == groups + 1
            assert gzip.decompress(later).decode() == dumps(list_meters(gateway))

            # a page compresses the page's groups, and nothing when asked again unchanged
            page = f"/api/v1/meters?offset={GROUP}&limit={GROUP}"
            paged = await raw_gzip(http, page)
            assert compressed() == groups + 2
            assert gzip.decompress(paged).decode() == dumps(
                list_meters(gateway, offset=GROUP, limit=GROUP)
            )
            assert await raw_gzip(http, page) == paged
            assert compressed() == groups + 2
            # the whole list after the page: its own segments were kept
            assert await raw_gzip(http, "/api/v1/meters") == later
            assert compressed() == groups + 2


def test_a_kept_answer_holds_a_digest_of_the_body_not_the_body() -> None:
    body = b'{"values":"' + b"x" * 100_000 + b'"}'
    packed = gzipped("/api/v1/test/digest", body)
    assert gzipped("/api/v1/test/digest", body) is packed  # unchanged: found kept
    digest, kept = compress._kept["/api/v1/test/digest"]
    assert (
        kept is packed and len(digest) == 32 and body not in compress._kept["/api/v1/test/digest"]
    )
