"""``/api/v1/values/latest`` keeps each meter's part of the answer between requests; a reading
stored since (a newer one, one of the same second, one with a new series, one flagged invalid)
shows at once, and the answer always equals the one written without anything kept. A large
answer's gzipped body is kept too, and used only for the very same answer."""

from __future__ import annotations

import gzip
import json
import sys
import tracemalloc
from datetime import UTC, datetime

from test_value_flags import long_frame
from webclient import Client, body
from webrig import METER_CSV, RigGateway

from mbusgw.core.records import decode
from mbusgw.gateway.store import SeriesNames, reading_from_telegrams
from mbusgw.gateway.store.model import SeriesInfo
from mbusgw.web.compress import KEPT_ANSWERS, gzipped
from mbusgw.web.values import SeriesCatalog

AT = int(datetime(2026, 12, 7, 0, 20, tzinfo=UTC).timestamp())
HEADER = "4304 01 07 2A 00 0000"
CLOCK = "04 6D 14 0E E7 1C"  # the meter's clock, 2015-12-07T14:20
CLOCK_INVALID = "04 6D 94 0E E7 1C"  # the same, with its invalid bit (IV) set
VOLUME = "04 13 D2040000"  # volume 1.234 m³


def energy(wh: int) -> str:
    return "04 03 " + wh.to_bytes(4, "little").hex()


async def store(gateway: RigGateway, meter: str, at: int, *records: str) -> None:
    identification = bytes.fromhex(meter)[::-1].hex()
    data = bytes.fromhex(identification + HEADER + "".join(records))
    telegram = decode(long_frame(data))
    reading = reading_from_telegrams(meter, (telegram,), at, names=SeriesNames())
    await gateway.writer.put_readings([reading])


async def latest(admin: Client) -> dict[str, dict]:
    answer = await admin.get("/api/v1/values/latest")
    assert answer.status_code == 200
    data = body(answer)
    # the same as the JSON-RPC method, which writes its answer afresh every time
    call = {"jsonrpc": "2.0", "id": 1, "method": "values.latest"}
    assert body(await admin.post("/api/jsonrpc", json=call))["result"] == data
    return {m["key"]: m for m in data["meters"]}


def shown(meter: dict) -> dict[str, tuple]:
    return {
        v["quantity"]: (v["value"], v["read_at"], v.get("invalid", False)) for v in meter["values"]
    }


async def test_latest_values_follow_every_stored_reading(
    admin: Client, gateway: RigGateway
) -> None:
    installed = await admin.post(
        "/api/v1/meters", data=METER_CSV, headers={"Content-Type": "text/csv"}
    )
    assert installed.status_code == 200
    await store(gateway, "12345678", AT, energy(1000), VOLUME)
    await store(gateway, "12345679", AT, energy(7))
    first = await latest(admin)
    assert shown(first["12345678"]) == {
        "energy": (1000, "2026-12-07T00:20:00+00:00", False),
        "volume": (1.234, "2026-12-07T00:20:00+00:00", False),
    }
    assert first["default:p5"]["values"] == [] and first["default:p5"]["read_at"] is None
    assert await latest(admin) == first  # nothing stored since: the same answer

    # a newer reading of one meter: its values and time change, the other meter's stay
    await store(gateway, "12345678", AT + 900, energy(1250), VOLUME, CLOCK)
    second = await latest(admin)
    assert shown(second["12345678"])["energy"] == (1250, "2026-12-07T00:35:00+00:00", False)
    assert second["12345678"]["read_at"] == "2026-12-07T00:35:00+00:00"
    assert second["12345679"] == first["12345679"]

    # another reading of the same second: same times, another value
    await store(gateway, "12345678", AT + 900, energy(1251), VOLUME, CLOCK)
    assert shown((await latest(admin))["12345678"])["energy"][0] == 1251

    # the same values later: only the times change
    await store(gateway, "12345678", AT + 1800, energy(1251), VOLUME, CLOCK)
    later = await latest(admin)
    assert shown(later["12345678"])["volume"] == (1.234, "2026-12-07T00:50:00+00:00", False)
    assert later["12345678"]["read_at"] == "2026-12-07T00:50:00+00:00"

    # the same values, the meter's clock now flagged invalid: only the flag tells
    await store(gateway, "12345678", AT + 1800, energy(1251), VOLUME, CLOCK_INVALID)
    assert shown((await latest(admin))["12345678"])["time_point"][2] is True

    # a series the answer did not have yet
    await store(gateway, "12345679", AT + 2700, energy(8), VOLUME)
    third = await latest(admin)
    assert shown(third["12345679"]) == {
        "energy": (8, "2026-12-07T01:05:00+00:00", False),
        "volume": (1.234, "2026-12-07T01:05:00+00:00", False),
    }
    assert third["12345678"] == (await latest(admin))["12345678"]


def test_a_kept_gzipped_answer_is_the_answer_of_now() -> None:
    before = b'{"meters":[' + b'{"key":"12345678","values":[1000]},' * 3000 + b"{}]}"
    after = before.replace(b"[1000]", b"[1001]", 1)
    kept = gzipped("/api/v1/values/latest", before)
    assert gzipped("/api/v1/values/latest", before) is kept  # unchanged: not compressed again
    assert gzip.decompress(gzipped("/api/v1/values/latest", after)) == after
    assert gzip.decompress(gzipped("/api/v1/values/latest", before)) == before
    for n in range(KEPT_ANSWERS + 1):  # other large answers push the oldest out
        gzipped(f"/api/v1/other/{n}", after)
    assert gzipped("/api/v1/values/latest", before) is not kept


class SiteSeries:
    """The series of a 512-meter site, eleven each, of a few kinds, as the store lists them."""

    KINDS = [
        (quantity, unit, function)
        for quantity, unit in (("energy", "Wh"), ("volume", "m³"), ("power", "W"))
        for function in ("instantaneous", "maximum", "minimum")
    ] + [("time_point", "", "instantaneous"), ("fabrication_no", "", "instantaneous")]

    def __init__(self) -> None:
        self.infos = [
            SeriesInfo(1 + 11 * m + k, f"line{m // 64}-{m % 64}", b"", *self.KINDS[k])
            for m in range(512)
            for k in range(len(self.KINDS))
        ]

    def series(self) -> list[SeriesInfo]:
        return self.infos


def test_the_series_catalog_keeps_a_text_per_kind_of_series_not_per_series() -> None:
    site = SiteSeries()
    catalog = SeriesCatalog()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        catalog.refresh(site, [info.id for info in site.infos])
        texts = [catalog.prefix(info.id) for info in site.infos]
        kept = tracemalloc.get_traced_memory()[0] - before
        held = kept - sys.getsizeof(texts) - sum(map(sys.getsizeof, texts))
    finally:
        tracemalloc.stop()
    for info, text in zip(site.infos, texts, strict=True):
        value = json.loads(text + "1}")
        assert value == {
            "series": info.id,
            "quantity": info.quantity,
            "unit": info.unit,
            "description": info.description,
            "value": 1,
        }
    assert held < 400 * 1024  # a text kept for each of the 5632 series: about 1 MB
