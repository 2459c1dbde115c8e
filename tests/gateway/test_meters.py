"""Meter list CSV (manual table 5), installation and capacity."""

from __future__ import annotations

import pytest

from mbusgw.gateway.meters import (
    AddressingMode,
    MeterListError,
    apply_capacity,
    install,
    parse_meter_list,
    template_csv,
)

GOOD = """Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress,EnhancedAddress
Heat flat 3,12345678,2400,secondary,,
Water cellar,,300,primary,5,
Hex id meter,1234ABCD,2400,secondary|primary,7,
"""


def test_template_parses_back() -> None:
    meters = parse_meter_list(template_csv())
    assert [m.mode for m in meters] == [
        AddressingMode.SECONDARY,
        AddressingMode.PRIMARY,
        AddressingMode.ESECONDARY,
    ]


def test_good_list() -> None:
    heat, water, hexid = parse_meter_list(GOOD, interface="line1")
    assert (heat.key, heat.baud, heat.position) == ("12345678", 2400, "Heat flat 3")
    assert (water.key, water.primary_address, water.baud) == ("line1:p5", 5, 300)
    assert hexid.addressing == (AddressingMode.SECONDARY, AddressingMode.PRIMARY)
    assert hexid.key == "1234ABCD"


def test_semicolons_bom_and_case_from_a_spreadsheet() -> None:
    text = (
        "\ufeffposition;secondaryaddress;baudrate;addressingmode\r\nA;00000001;2400;Secondary\r\n"
    )
    (meter,) = parse_meter_list(text)
    assert meter.secondary_address == "00000001"


def test_every_bad_row_is_reported_and_nothing_is_returned() -> None:
    text = (
        "Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress,Colour\n"
        "ok,12345678,2400,secondary,,\n"
        "bad id,1234567,2400,secondary,,\n"
        "bad baud,22345678,1200,secondary,,\n"
        "bad mode,32345678,2400,tertiary,,\n"
        "no primary,,2400,primary,,\n"
        "primary too big,,2400,primary,251,\n"
        "duplicate,12345678,2400,secondary,,\n"
    )
    with pytest.raises(MeterListError) as caught:
        parse_meter_list(text)
    found = [(e.line, e.column) for e in caught.value.errors]
    assert found == [
        (1, "Colour"),
        (3, "SecondaryAddress"),
        (4, "BaudRate"),
        (5, "AddressingMode"),
        (6, "PrimaryAddress"),
        (7, "PrimaryAddress"),
        (8, None),
    ]
    assert "nothing installed" in str(caught.value)
    assert str(caught.value.errors[-1]) == "line 8: meter 12345678 is also on line 2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("Position,SecondaryAddress\nx,12345678\n", "missing column"),
        ("Position,SecondaryAddress,BaudRate,AddressingMode\n\n", "no meters"),
    ],
)
def test_unusable_files(text: str, message: str) -> None:
    with pytest.raises(MeterListError, match=message):
        parse_meter_list(text)


def test_capacity_makes_the_rest_passive_and_reinstall_updates() -> None:
    rows = "\n".join(f"m{i},{i:08d},2400,secondary" for i in range(10))
    meters = parse_meter_list("Position,SecondaryAddress,BaudRate,AddressingMode\n" + rows)
    installed = install([], meters, capacity=8)
    assert [m.active for m in installed] == [True] * 8 + [False] * 2
    # the user turns one meter off: a passive one moves up into the capacity
    installed[0] = installed[0].__class__(**{**installed[0].__dict__, "enabled": False})
    assert [m.active for m in apply_capacity(installed, 8)] == [False] + [True] * 8 + [False]
    # installing the same list again changes nothing but the listed fields
    again = install(installed, meters, capacity=8)
    assert [m.key for m in again] == [m.key for m in installed]
    assert again[0].enabled is False
    with pytest.raises(ValueError, match="capacity"):
        install([], meters, capacity=10)
