"""Compact frames: layouts from full and format frames, signatures, rebuilding, fuzzing."""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import importlib.util
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wmbus_vectors import load_cases

from mbusgw.core.compact import (
    CompactLayout,
    crc16,
    layouts_from_json,
    rebuild_full_frame,
    scan_records,
    split_compact,
    whole_records_length,
)
from mbusgw.core.errors import ChecksumError, DecodeError, LayoutUnknownError, MBusError
from mbusgw.core.wireless_decoder import WirelessDecoder

# EN 13757-3 G.5 (exmbus vectors): full frame records, format frame, compact frame.
G5_FULL = bytes.fromhex("0202D20402152E16022A3423")
G5_FORMAT = bytes.fromhex("08313B02020215022A")
G5_COMPACT = bytes.fromhex("313B42A6D2042E163423")


def test_format_signature_of_the_standard_example() -> None:
    layout = CompactLayout.from_full_frame(G5_FULL)
    assert layout.signature == 0x3B31
    assert layout.headers == (b"\x02\x02", b"\x02\x15", b"\x02\x2a")
    assert layout.sizes == (2, 2, 2)
    assert CompactLayout.from_format_frame(G5_FORMAT) == layout
    assert split_compact(G5_COMPACT) == (0x3B31, 0xA642, bytes.fromhex("D2042E163423"))
    assert crc16(G5_FULL) == 0xA642
    assert rebuild_full_frame(layout, G5_COMPACT) == G5_FULL


def test_rebuilding_checks_signature_and_full_frame_crc() -> None:
    layout = CompactLayout.from_full_frame(G5_FULL)
    with pytest.raises(ChecksumError):
        rebuild_full_frame(layout, G5_COMPACT[:-1] + b"\x24")
    with pytest.raises(DecodeError, match="signature"):
        rebuild_full_frame(layout, b"\x00\x00" + G5_COMPACT[2:])
    with pytest.raises(DecodeError):
        rebuild_full_frame(layout, G5_COMPACT[:-3])
    with pytest.raises(ChecksumError):
        CompactLayout.from_format_frame(G5_FORMAT[:1] + b"\x00" + G5_FORMAT[2:])


def test_scan_handles_extensions_fill_variable_length_and_manufacturer_tail() -> None:
    apl = bytes.fromhex(
        "2F2F"  # fill
        "8410FD3A11220000"  # DIF+DIFE, VIF 0xFD + VIFE
        "0D7C03414243"
        "03616263"  # plain-text VIF "ABC", variable ASCII data of 3 bytes
        "0F0102"  # manufacturer specific rest
    )
    shapes, tail = scan_records(apl)
    assert [s.header.hex() for s in shapes] == ["8410fd3a", "0d7c03414243"]
    assert [s.data_size for s in shapes] == [4, 4]
    assert tail == len(apl) - 3
    assert whole_records_length(apl) == len(apl)


def test_whole_records_length_cuts_a_broken_last_record() -> None:
    apl = bytes.fromhex("2F2F0413630400000 46D28344428 8201".replace(" ", ""))
    assert whole_records_length(apl) == len(apl) - 2
    assert whole_records_length(b"") == 0


def test_special_and_reserved_codes_are_typed_errors() -> None:
    with pytest.raises(DecodeError, match="special DIF"):
        scan_records(b"\x7f\x00")
    with pytest.raises(DecodeError, match="LVAR"):
        scan_records(b"\x0d\x13\xf8")
    with pytest.raises(DecodeError, match="DIFE"):
        scan_records(b"\x84" + b"\x80" * 11 + b"\x00\x13")


@pytest.mark.property
@given(st.binary(max_size=120))
def test_fuzz_scan_and_layouts(data: bytes) -> None:
    try:
        layout = CompactLayout.from_full_frame(data)
    except MBusError:
        return
    compact = bytes(4) + data
    with contextlib.suppress(MBusError):
        rebuild_full_frame(layout, compact)
    assert 0 <= whole_records_length(data) <= len(data)


@pytest.mark.property
@given(st.binary(max_size=60))
def test_fuzz_format_frames(data: bytes) -> None:
    with contextlib.suppress(MBusError):
        CompactLayout.from_format_frame(data)


# ---------------------------------------------------------------- the layouts the package ships

ROOT = Path(__file__).resolve().parents[2]


def shipped() -> dict:
    return layouts_from_json((ROOT / "core" / "compact_layouts.json").read_text())


def vector(source_file: str, name: str) -> list[bytes]:
    (case,) = [c for c in load_cases() if (c["source_file"], c["test_name"]) == (source_file, name)]
    return [bytes.fromhex(raw) for raw in case["telegrams_hex"]]


def test_the_shipped_layouts_are_what_the_public_full_frames_give() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_compact_layouts", ROOT / "tools" / "gen_compact_layouts.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OUTPUT.read_text() == module.generate(), "run tools/gen_compact_layouts.py"
    document = json.loads(module.OUTPUT.read_text())
    assert "GPL-3.0-or-later" in document["about"]
    for entry in document["layouts"]:
        assert set(entry["source"]) == {"repo", "commit", "file", "test"}


def test_the_shipped_layouts_are_package_data() -> None:
    # setup.py's package_data must carry the file into an installed (non-editable) package
    tree = ast.parse((ROOT / "setup.py").read_text())
    (call,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"
    ]
    (package_data,) = [k.value for k in call.keywords if k.arg == "package_data"]
    if isinstance(package_data, ast.Name):  # a table named at module level
        (package_data,) = [
            node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == package_data.id for t in node.targets)
        ]
    patterns = ast.literal_eval(package_data)["mbusgw.core"]
    assert any(fnmatch.fnmatch("compact_layouts.json", p) for p in patterns)


@pytest.mark.parametrize(
    ("source_file", "name", "signature"),
    [
        ("drivers/src/kamheat.xmq", "Heato#2", 0x8400),  # wmbusmeters multical602
        (
            "src/test/java/org/openmuc/jmbus/wireless/ShortTelegramTest.java",
            "testShortKamstrupNew",
            0xD7C4,
        ),  # jMBus Kamstrup heat meter
    ],
)
def test_a_known_meters_compact_frame_decodes_without_its_full_frame(
    source_file: str, name: str, signature: int
) -> None:
    full, compact = vector(source_file, name)
    alone = WirelessDecoder(known_layouts=shipped()).decode(compact)
    learning = WirelessDecoder()
    learning.decode(full)
    after_full = learning.decode(compact)
    assert alone.payload_kind == "records"
    assert alone.payload == after_full.payload  # the rebuilt frame's CRC matched
    assert alone.application.to_dict() == after_full.application.to_dict()
    learnt = learning.layouts(alone.meter)[signature]
    assert shipped()[alone.meter.manufacturer][signature] == learnt


def test_an_unknown_signature_still_waits_for_a_full_frame() -> None:
    # wmbusmeters kamwater "MyTapWater#2": a multical21 compact frame whose layout (0xA8ED) no
    # public full frame gives
    (compact,) = vector("drivers/src/kamwater.xmq", "MyTapWater#2")
    with pytest.raises(LayoutUnknownError) as caught:
        WirelessDecoder(known_layouts=shipped()).decode(compact)
    assert caught.value.signature == 0xA8ED


def test_a_layout_is_known_per_manufacturer() -> None:
    _full, compact = vector("drivers/src/kamheat.xmq", "Heato#2")
    layouts = shipped()
    foreign = {"XYZ": layouts["KAM"]}
    with pytest.raises(LayoutUnknownError):
        WirelessDecoder(known_layouts=foreign).decode(compact)


def test_a_damaged_layout_file_is_refused() -> None:
    entry = {"manufacturer": "KAM", "signature": "0000", "headers": ["0413"], "sizes": [4]}
    with pytest.raises(ValueError, match="give 0x"):
        layouts_from_json(json.dumps({"layouts": [entry]}))
    with pytest.raises(ValueError, match="not a compact layout file"):
        layouts_from_json(json.dumps({"layouts": [{"headers": ["0413"]}]}))
