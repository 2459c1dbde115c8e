"""The meter list at the scale of a site, over real HTTP: pages of the list with the fields
asked for, the latest values looked up for that page only, large API answers gzipped."""

from __future__ import annotations

from pathlib import Path

import trio
from webrig import SERVED_ADMIN, install_flats, served_gateway

from mbusgw.gateway.settings import InterfaceConfig

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=2)


async def test_the_meter_list_comes_in_pages_of_the_fields_asked_for(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, LINE) as (gateway, http):
            await install_flats(http, range(100, 220))
            asked: list[list[str]] = []  # the meters each lookup of latest values was for
            latest = gateway.store.latest

            def spy(keys: list[str], *args: object, **kwargs: object) -> object:
                asked.append(list(keys))
                return latest(keys, *args, **kwargs)

            gateway.store.latest = spy  # type: ignore[method-assign]
            await gateway.read_all(gateway.meters[:2])  # the two simulated meters have values
            page = await http.get(
                "/api/v1/meters?offset=0&limit=5&fields=position,latest", auth=SERVED_ADMIN
            )
            later = await http.get("/api/v1/meters?offset=120&limit=5", auth=SERVED_ADMIN)
            bare = await http.get("/api/v1/meters?limit=2&fields=key", auth=SERVED_ADMIN)
            everything = await http.get("/api/v1/meters", auth=SERVED_ADMIN)
            bad = await http.get("/api/v1/meters?fields=key,secret", auth=SERVED_ADMIN)

    listing = page.json()
    assert listing["count"] == listing["total"] == 122 and listing["offset"] == 0
    assert [set(m) for m in listing["meters"]] == [{"key", "position", "state", "latest"}] * 5
    assert listing["meters"][0]["latest"] is not None
    assert [m["key"] for m in later.json()["meters"]] == ["sim1:p218", "sim1:p219"]
    # latest values were looked up for the meters shown, never for all 122
    assert asked and all(len(keys) <= 5 for keys in asked)
    # a large answer is gzipped for a client that takes it (httpx does), a small one is not
    assert everything.headers["content-encoding"] == "gzip"
    assert len(everything.json()["meters"]) == 122
    meter = gateway.meters[1]
    assert "content-encoding" not in bare.headers and bare.json()["meters"][1] == {
        "key": meter.key,
        "position": meter.position,
        "state": "active",
    }
    assert "Accept-Encoding" in everything.headers["vary"]
    assert bad.status_code == 400 and "no such meter field: secret" in bad.text
