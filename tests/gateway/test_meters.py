"""Meter list CSV (manual table 5), installation and capacity."""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest

from mbusgw.gateway.meters import (
    AddressingMode,
    MeterListError,
    apply_capacity,
    install,
    learnt_identities,
    merge_found,
    parse_meter_list,
    template_csv,
    with_identities,
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
        AddressingMode.ESECONDARY,
    ]
    assert [m.wireless for m in meters] == [False, False, False, True]
    assert template_csv().splitlines()[0].endswith(",Interface")


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


HEADER = "Position,SecondaryAddress,BaudRate,AddressingMode,PrimaryAddress,EnhancedAddress"


def test_the_interface_column_places_a_row_on_its_line() -> None:
    text = f"{HEADER},Interface\nA,,2400,primary,1,,\nE,,2400,primary,1,,lineE\n"
    a, e = parse_meter_list(text, interface="lineA", lines=("lineA", "lineE"))
    assert (a.key, a.interface, e.key, e.interface) == ("lineA:p1", "lineA", "lineE:p1", "lineE")
    # matched by line and address: the same address on another line is another meter
    assert [m.position for m in install([a], [e], capacity=8)] == ["A", "E"]
    with pytest.raises(MeterListError) as caught:
        parse_meter_list(f"{HEADER},Interface\nX,,2400,primary,1,,lineX\n", lines=("lineA",))
    assert [str(e) for e in caught.value.errors] == [
        "line 2, column Interface: 'lineX' is not a configured M-Bus line (configured: lineA)"
    ]
    # a tool without the gateway's configuration takes the name as it is
    (anywhere,) = parse_meter_list(f"{HEADER},Interface\nX,,2400,primary,1,,lineX\n")
    assert anywhere.key == "lineX:p1"


def test_a_wired_enhanced_selection_needs_the_fabrication_number() -> None:
    for modes in ("esecondary", "secondary|esecondary"):
        with pytest.raises(MeterListError) as caught:
            parse_meter_list(f"{HEADER}\nGas,23456789,2400,{modes},,\n")
        assert [(e.line, e.column) for e in caught.value.errors] == [(2, "EnhancedAddress")]
    (gas,) = parse_meter_list(f"{HEADER}\nGas,23456789,2400,esecondary,,70012345\n")
    assert gas.enhanced_address == "70012345" and not gas.wireless
    (radio,) = parse_meter_list(
        f"{HEADER}\nW,23456789,2400,esecondary,,\n", wireless_by_default=True
    )
    assert radio.wireless


def test_a_field_beyond_the_csv_limit_is_named_by_row_and_column() -> None:
    huge = "y" * (csv.field_size_limit() + 1)
    # the record begins on line 3; its quoted first field runs over two lines
    text = f'{HEADER}\nok,12345678,2400,secondary,,\n"a\nb",,,,,{huge}\n'
    with pytest.raises(MeterListError) as caught:
        parse_meter_list(text)
    assert [str(e) for e in caught.value.errors] == [
        f"line 3, column EnhancedAddress: longer than {csv.field_size_limit()} characters"
    ]


def test_a_search_adds_new_meters_and_leaves_installed_ones_as_they_are() -> None:
    (mine,) = parse_meter_list(f"{HEADER}\nFlat 7,12345678,2400,secondary|primary,9,\n")
    (primary_only,) = parse_meter_list(f"{HEADER}\nCellar,,2400,primary,5,\n")
    found = [
        replace(
            mine, position="EFE 12345678", primary_address=None, addressing=mine.addressing[:1]
        ),
        replace(mine, key="55555555", secondary_address="55555555", primary_address=5),
        replace(mine, key="66666666", secondary_address="66666666", primary_address=None),
    ]
    merged = merge_found([mine, primary_only], found, capacity=8)
    assert merged.meters[:2] == [mine, primary_only]
    assert [m.key for m in merged.known] == ["12345678", "55555555"]
    assert [m.key for m in merged.added] == ["66666666"] == [m.key for m in merged.meters[2:]]


def test_an_identity_heard_is_recorded_once() -> None:
    (mine,) = parse_meter_list(f"{HEADER}\nFlat 7,12345678,2400,secondary,,\n")
    learnt = learnt_identities([mine], {"12345678": ("EFE", 3, 4), "99999999": ("ABB", 1, 2)})
    assert learnt == {"12345678": ("EFE", 3, 4)}
    (known,) = with_identities([mine], learnt)
    assert (known.manufacturer, known.version, known.medium) == ("EFE", 3, 4)
    assert learnt_identities([known], {"12345678": ("EFE", 3, 4)}) == {}
