"""The key store: CSV/Excel uploads with per-row errors, match order, links, secrecy."""

from __future__ import annotations

import contextlib
import io
import logging

import openpyxl
import pytest
import xlwt
from hypothesis import given
from hypothesis import strategies as st

from mbusgw.core.wireless_decoder import WirelessDecoder
from mbusgw.core.wmbus import MeterId
from mbusgw.gateway.keys import (
    KeyFileError,
    KeySnapshot,
    KeyStore,
    MemoryKeyBackend,
    parse_key_file,
)

N21 = bytes.fromhex(
    "2E4493157856341233037A2A0020255923C95AAA26D1B2E7493B013EC4A6F6D3529B520EDFF0EA6DEFC99D6D69EBF3"
)
GOOD = "0102030405060708090A0B0C0D0E0F11"
OTHER = "000102030405060708090A0B0C0D0E0F"
THIRD = "FFEEDDCCBBAA00998877665544332211"
ELS = MeterId("ELS", "12345678", 51, 3)


def csv_bytes(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode()


def test_csv_with_any_marks_and_semicolons() -> None:
    entries = parse_key_file(
        csv_bytes(
            "address;KEY;Manufacturer;Device Type;version;comment",
            f"12345678;{GOOD};ELS;3;51;the water meter",
            f"-1;{OTHER};*;-1;-1;",
            f"*;{THIRD};kam;0x07;;",
            ";;;;;",
        ),
        "keys.csv",
    )
    assert [(e.address, e.manufacturer, e.device_type, e.version) for e in entries] == [
        ("12345678", "ELS", 3, 51),
        (None, None, None, None),
        (None, "KAM", 7, None),
    ]
    assert entries[0].source == "keys.csv row 2"


async def test_most_specific_key_comes_first_and_links_beat_everything() -> None:
    store = KeyStore()
    await store.import_file(
        csv_bytes(
            "Address,Key,Manufacturer,DeviceType,Version",
            f"-1,{THIRD},*,-1,-1",
            f"-1,{OTHER},ELS,3,51",
            f"12345678,{GOOD},*,-1,-1",
            f"87654321,{THIRD},ELS,-1,-1",
        ),
        "keys.csv",
    )
    order = [key.masked for key in store.keys_for(ELS)]
    assert order == [mask(GOOD), mask(OTHER), mask(THIRD)]
    await store.link(ELS, THIRD)
    assert store.best_key(ELS).masked == mask(THIRD)
    await store.unlink(ELS)
    assert store.best_key(ELS).masked == mask(GOOD)
    assert store.keys_for(MeterId("KAM", "00000001", 1, 7))[0].masked == mask(THIRD)


def mask(key: str) -> str:
    return key[0] + "*" * 30 + key[-1]


async def test_a_bad_file_lists_every_bad_row_and_changes_nothing() -> None:
    store = KeyStore()
    await store.import_file(
        csv_bytes("Address,Key,Manufacturer,DeviceType,Version", f"12345678,{GOOD},ELS,3,51"),
        "first.csv",
    )
    before = store.listing()
    with pytest.raises(KeyFileError) as caught:
        await store.import_file(
            csv_bytes(
                "Address,Key,Manufacturer,DeviceType,Version",
                f"1234567890,{OTHER},ELS,3,51",
                f"12345678,{OTHER[:30]},ELS,3,51",
                f"12345678,{OTHER},EL5,300,x",
                "12345678,,ELS,3,51",
                f"-1,{THIRD},*,-1,-1",
            ),
            "second.csv",
            replace_all=True,
        )
    errors = [(e.line, e.column) for e in caught.value.errors]
    assert errors == [
        (2, "Address"),
        (3, "Key"),
        (4, "Manufacturer"),
        (4, "DeviceType"),
        (4, "Version"),
        (5, "Key"),
    ]
    assert store.listing() == before
    assert OTHER[:30] not in str(caught.value)


def test_missing_columns_and_empty_files() -> None:
    with pytest.raises(KeyFileError) as caught:
        parse_key_file(csv_bytes("Address,Key", f"1,{GOOD}"), "k.csv")
    assert {e.column for e in caught.value.errors} == {"Manufacturer", "DeviceType", "Version"}
    with pytest.raises(KeyFileError, match="empty"):
        parse_key_file(b"", "k.csv")
    with pytest.raises(KeyFileError, match="no keys"):
        parse_key_file(csv_bytes("Address,Key,Manufacturer,DeviceType,Version"), "k.csv")


def test_xlsx_upload() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Address", "Key", "Manufacturer", "DeviceType", "Version"])
    sheet.append([12345678, GOOD, "ELS", 3, 51])
    sheet.append([12345, OTHER.lower(), "*", -1, -1])
    out = io.BytesIO()
    book.save(out)
    entries = parse_key_file(out.getvalue(), "keys.xlsx")
    assert [e.address for e in entries] == ["12345678", "00012345"]
    assert entries[0].device_type == 3


def test_xls_97_2003_upload() -> None:
    book = xlwt.Workbook()
    sheet = book.add_sheet("keys")
    for col, name in enumerate(["Address", "Key", "Manufacturer", "DeviceType", "Version"]):
        sheet.write(0, col, name)
    for col, value in enumerate([12345678, GOOD, "ELS", 3, 51]):
        sheet.write(1, col, value)
    out = io.BytesIO()
    book.save(out)
    entries = parse_key_file(out.getvalue(), "keys.xls")
    assert (entries[0].address, entries[0].version, entries[0].device_type) == ("12345678", 51, 3)


def test_unreadable_workbooks_are_key_file_errors() -> None:
    with pytest.raises(KeyFileError, match="xlsx"):
        parse_key_file(b"PK\x03\x04 not really a zip", "keys.xlsx")
    with pytest.raises(KeyFileError, match="xls"):
        parse_key_file(b"\xd0\xcf\x11\xe0 not really an OLE file", "keys.xls")


async def test_keys_are_never_logged_or_listed(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    store = KeyStore()
    await store.import_file(
        csv_bytes("Address,Key,Manufacturer,DeviceType,Version", f"12345678,{GOOD},ELS,3,51"),
        "keys.csv",
    )
    await store.link(ELS, OTHER)
    await store.add(THIRD, manufacturer="KAM")
    text = caplog.text + repr(store.listing()) + repr(store.entries()) + repr(store.links())
    for secret in (GOOD, OTHER, THIRD):
        assert secret not in text.upper()
    assert "imported keys.csv" in caplog.text


async def test_a_failing_backend_leaves_the_store_unchanged() -> None:
    class Broken(MemoryKeyBackend):
        async def save(self, snapshot: KeySnapshot) -> None:
            raise OSError("disk full")

    store = KeyStore(Broken())
    with pytest.raises(OSError):
        await store.add(GOOD, address="12345678")
    assert store.entries() == ()
    assert store.keys_for(ELS) == []


async def test_entries_by_hand_are_validated_and_removable() -> None:
    store = KeyStore()
    (entry,) = await store.add(GOOD, address=12345678, device_type=3)
    assert await store.add(GOOD, address="12345678", device_type=3) == []
    with pytest.raises(KeyFileError):
        await store.add("12", address="12345678")
    with pytest.raises(KeyFileError):
        await store.link(ELS, "not a key")
    await store.remove(entry.id)
    assert store.entries() == ()
    with pytest.raises(KeyError):
        await store.remove(entry.id)


async def test_the_store_is_the_decoders_key_source() -> None:
    store = KeyStore()
    decoder = WirelessDecoder(keys=store)
    store.on_change(lambda: decoder.set_keys(store))
    await store.add(OTHER, manufacturer="ELS")
    with pytest.raises(Exception, match="wrong key"):
        decoder.decode(N21)
    await store.add(GOOD, address="12345678")
    assert decoder.decode(N21).payload[:2] == b"\x2f\x2f"
    assert decoder.diagnosis(ELS).counts["wrong_key"] == 1


@pytest.mark.property
@given(st.text(max_size=300), st.sampled_from(["k.csv", "k.xlsx", "k.xls", "k.txt"]))
def test_fuzz_key_files_raise_only_key_file_errors(text: str, name: str) -> None:
    with contextlib.suppress(KeyFileError):
        parse_key_file(text.encode(), name)


@pytest.mark.property
@given(
    st.lists(
        st.lists(
            st.one_of(st.none(), st.integers(-5, 300), st.floats(), st.text(max_size=40)),
            max_size=6,
        ),
        max_size=5,
    )
)
def test_fuzz_spreadsheet_cells(rows) -> None:
    from mbusgw.gateway.keys import parse_rows

    header = ["Address", "Key", "Manufacturer", "DeviceType", "Version"]
    with contextlib.suppress(KeyFileError):
        parse_rows([header, *rows], "cells")
