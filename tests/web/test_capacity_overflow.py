"""Going over the capacity is a warning naming the meters made passive: in the API's result,
on the page after installing, and in the system log (never a silent success)."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
from test_search_expected import logged
from webrig import SERVED_ADMIN, served_gateway, sign_in_over_http

from mbusgw.gateway.settings import InterfaceConfig

HEADER = "Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress,EnhancedAddress\n"
LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=4)


def rows(first: int, count: int) -> str:
    return "".join(f"Flat {a},,2400,primary,{a},\n" for a in range(first, first + count))


async def test_meters_over_the_capacity_are_named_in_a_warning(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with served_gateway(tmp_path, LINE) as (_gateway, http):
            changed = await http.patch("/api/v1/settings", auth=SERVED_ADMIN, json={"capacity": 8})
            assert changed.status_code == 200, changed.text
            within = await http.post(
                "/api/v1/meters",
                auth=SERVED_ADMIN,
                content=(HEADER + rows(100, 2)).encode(),
                headers={"Content-Type": "text/csv"},
            )
            over = await http.post(
                "/api/v1/meters",
                auth=SERVED_ADMIN,
                content=(HEADER + rows(110, 5)).encode(),
                headers={"Content-Type": "text/csv"},
            )
            warned = await logged(http, "installation", "sim1:p113, sim1:p114")

            token = await sign_in_over_http(http, *SERVED_ADMIN)
            posted = await http.post(
                "/install",
                data={"csrf_token": token},
                files={"file": ("meters.csv", HEADER + rows(120, 1), "text/csv")},
            )
            notice = httpx.URL(posted.headers["location"]).params["notice"]
    assert within.status_code == 200 and within.json()["warning"] is None
    assert within.json()["over_capacity"] == []
    result = over.json()
    assert over.status_code == 200 and result["passive"] == 3
    # 4 simulated + 2 + 5 = 11 meters for 8: the last three of this list are passive
    assert result["over_capacity"] == ["sim1:p112", "sim1:p113", "sim1:p114"]
    assert result["warning"] == (
        "capacity of 8 active meters reached: 3 meter(s) installed passive (not read): "
        "sim1:p112, sim1:p113, sim1:p114"
    )
    assert warned["level_name"] == "warning" and warned["text"] == result["warning"]
    assert posted.status_code == 303
    assert notice.endswith(
        "Warning: capacity of 8 active meters reached: 1 meter(s) installed passive "
        "(not read): sim1:p120"
    )
