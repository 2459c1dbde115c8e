"""An independent client: Debian's ``mbpoll`` (libmodbus) reads a meter's registers and sees the
meter's values, in both word orders. ``make test`` installs mbpoll (tools/system-deps.txt)."""

from __future__ import annotations

import pytest
import trio
from modbus_rig import DATE, ENERGY, FLOW_TEMP, IDENTITY, VOLUME, Rig, mbpoll, meter

from mbusgw.gateway.settings import Settings


@pytest.mark.parametrize(("order", "flag"), [("big", ("-B",)), ("little", ())])
async def test_mbpoll_reads_a_meter(order: str, flag: tuple[str, ...]) -> None:
    settings = (
        Settings()
        .updated(
            {
                "modbus": {
                    "host": "127.0.0.1",
                    "port": 0,
                    "word_order": order,
                    "meters": {
                        "00000002": {"unit_id": 12, "series": {"046D": {"data_type": "int32"}}}
                    },
                }
            }
        )
        .modbus
    )
    rig = Rig([meter("00000001"), meter("00000002")], settings)
    rig.reading("00000002", [ENERGY, VOLUME, FLOW_TEMP, DATE])
    base = 2 * 125
    with trio.fail_after(30):
        async with rig.serving() as (_, port):
            header = await mbpoll(port, 1, "4", base, 2)
            ident = await mbpoll(port, 1, "3:int", base + 8, 1, *flag)
            floats = await mbpoll(port, 1, "4:float", base + 17, 3, "-l", "100", *flag)
            # slots are 4 registers apart: read them one by one
            values = [
                await mbpoll(port, 1, "4:float", base + 17 + 4 * i, 1, *flag) for i in range(3)
            ]
            date = await mbpoll(port, 12, "3:int", 17 + 4 * 3, 1, *flag)
            probe = await mbpoll(port, 1, "4:int", 17, 1, *flag)
            missing = await mbpoll(port, 1, "4", 3 * 125, 1)
            unknown_unit = await mbpoll(port, 99, "4", 0, 1)
    assert header == {base: "0", base + 1: "4"}  # state ok, four values
    assert ident == {base + 8: str(IDENTITY.id)}
    assert float(floats[base + 17]) == pytest.approx(123_456_000, rel=1e-5)
    assert float(values[0][base + 17]) == pytest.approx(123_456_000, rel=1e-5)
    assert float(values[1][base + 21]) == pytest.approx(1234.567, rel=1e-5)
    assert float(values[2][base + 25]) == pytest.approx(-5.2, rel=1e-5)
    assert date == {29: "1767225600"}
    assert probe == {17: str(0x12345678)}
    assert "Illegal data address" in missing
    assert "failed" in unknown_unit
