"""``GET /api/v1/meters`` as JSON text (the API's other hot path: 512 meters, about a megabyte).

Each meter's part of the answer is kept between requests with what it was written from: the
meter's settings, its Modbus flag, its health and its latest values (``values.LatestCache``,
which rewrites only the meters whose stored values changed). A part is written again only when
one of these differs, so the answer equals ``operations.list_meters`` written afresh.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any

from mbusgw.core.jsonout import dumps
from mbusgw.gateway.facade import GatewayHandle
from mbusgw.gateway.meters import Meter
from mbusgw.web.compress import MIN_BYTES, Part, PartsGzip, joined
from mbusgw.web.operations import health_of, meter_dict, meter_page, modbus_enabled
from mbusgw.web.plain import iso
from mbusgw.web.values import LatestCache, catalog, latest_cache

KEPT_PAGES = 2


class MeterListCache:
    """Each meter's JSON part with the inputs it was written from."""

    def __init__(self) -> None:
        # by page (passive, offset, limit, fields): the latest values' texts and the gzip
        # segments, so that a page and the whole list asked in turn each find theirs unchanged
        self.pages: OrderedDict[tuple, tuple[LatestCache, PartsGzip]] = OrderedDict()
        # meter key: (fields, meter, Modbus flag, health, latest values, part); the part holds
        # the latest values' text itself, not a copy
        self.parts: dict[str, tuple[Any, Meter, bool, dict, Any, Part]] = {}

    def page(self, key: tuple, latest: LatestCache | None) -> tuple[LatestCache, PartsGzip]:
        """The kept texts of page ``key``; ``latest``: the latest values' texts to use instead
        of the page's own (those of every meter, for the whole list: the page's stay empty)."""
        kept = self.pages.pop(key, None) or (LatestCache(), PartsGzip())
        self.pages[key] = kept
        while len(self.pages) > KEPT_PAGES:
            self.pages.popitem(last=False)
        return latest or kept[0], kept[1]

    def texts(
        self,
        gw: GatewayHandle,
        page: list[Meter],
        fields: frozenset[str] | None,
        latest: dict[str, tuple[str, int]] | None,
        whole: bool,
    ) -> list[Part]:
        """The parts of ``page``; ``latest`` None: the latest values are not asked for.
        ``whole``: the page is every meter, so the parts of removed meters are let go."""
        if whole:
            kept, self.parts = self.parts, {}
        else:
            kept = self.parts
        out = []
        for meter in page:
            modbus = modbus_enabled(gw, meter)
            health = health_of(gw, meter.key).as_dict()
            values = latest.get(meter.key) if latest is not None else None
            last = kept.get(meter.key)
            if (
                last is not None
                and last[0] == fields
                and last[4] is values
                and last[2] == modbus
                and last[3] == health
                and last[1] == meter
            ):
                self.parts[meter.key] = last
                out.append(last[5])
                continue
            text = _part(gw, meter, fields, values)
            self.parts[meter.key] = (fields, meter, modbus, health, values, text)
            out.append(text)
        return out


def _part(gw: GatewayHandle, meter: Meter, fields: frozenset[str] | None, values: Any) -> Part:
    """One meter's JSON, as ``list_meters`` writes it (``latest`` is its last field)."""
    row = meter_dict(gw, meter)
    del row["latest"]
    if fields is not None:
        row = {name: row[name] for name in row if name in fields}
    if fields is not None and "latest" not in fields:
        return (dumps(row),)
    if values is None:
        return (dumps(row)[:-1] + ',"latest":null}',)
    read_at = f',"latest":{{"read_at":{dumps(iso(values[1]))},"values":['
    return dumps(row)[:-1] + read_at, values[0], "]}}"


_caches: weakref.WeakKeyDictionary[Any, MeterListCache] = weakref.WeakKeyDictionary()


def meters_json(
    gw: GatewayHandle,
    passive: bool = True,
    offset: int = 0,
    limit: int | None = None,
    fields: frozenset[str] | None = None,
    gzip: bool = False,
) -> tuple[bytes, bool]:
    """``operations.list_meters`` as JSON text, from the parts kept for the gateway's store,
    and whether it is gzipped: with ``gzip`` it is when large enough (``compress.MIN_BYTES``),
    from the segments kept of the parts that did not change."""
    page, counts = meter_page(gw, passive, offset, limit)
    cache = _caches.get(gw.store)
    if cache is None:
        cache = _caches[gw.store] = MeterListCache()
    whole = len(page) == len(gw.meters)
    # every meter: the latest values' texts are those of ``/values/latest`` (one copy of each)
    shared = latest_cache(gw) if whole else None
    latest_texts, packer = cache.page((passive, offset, limit, fields), shared)
    latest = None
    if fields is None or "latest" in fields:
        wanted = gw.store.stored_meters(m.key for m in page)  # a page costs its size
        table = gw.store.latest(wanted) if wanted else None
        latest = latest_texts.update(catalog(gw), gw.store, table)
    parts = cache.texts(gw, page, fields, latest, whole)
    head, tail = '{"meters":[', "]," + dumps(counts)[1:]
    size = len(head) + len(tail) + len(parts) + sum(len(text) for part in parts for text in part)
    if gzip and size >= MIN_BYTES:
        return packer.gzipped(head, parts, tail), True
    return (head + joined(parts) + tail).encode(), False
