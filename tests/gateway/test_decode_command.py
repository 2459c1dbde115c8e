"""``mbusgw decode``: hex in any spacing and case, stdin, table and JSON output, exit status."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

from mbusgw.core import decode
from mbusgw.core.jsonout import dumps
from mbusgw.gateway import cli

DATA = Path(__file__).parent.parent / "data" / "libmbus"
WMBUS = Path(__file__).parent.parent / "data" / "wmbus"
EXAMPLE = (DATA / "test-frames" / "example_data_01.hex").read_text().strip()
WATER = (DATA / "test-frames" / "itron_cyble_m-bus_v1.4_water.hex").read_text().strip()
BAD_DATA = (DATA / "error-frames" / "premature_end_of_data1.hex").read_text().strip()
BUSY = (DATA / "error-frames" / "application_busy.hex").read_text().strip()


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    args = cli.build_parser().parse_args(["decode", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = args.func(args, stdin=io.StringIO(stdin), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_json_has_the_fixed_keys_and_exact_values() -> None:
    status, out, err = run(["--json", WATER])
    assert status == 0 and err == ""
    telegram = json.loads(out, parse_float=Decimal)
    assert set(telegram["header"]) == {
        "id",
        "manufacturer",
        "version",
        "medium",
        "access_number",
        "status",
        "signature",
    }
    assert telegram["header"]["id"] == "12000071"
    volume = telegram["records"][4]
    assert set(volume) == {
        "function",
        "storage",
        "tariff",
        "subunit",
        "quantity",
        "unit",
        "value",
        "dif_vif",
    }
    assert volume["value"] == Decimal("123.49") and volume["unit"] == "m³"
    assert '"value":123.49,' in out  # printed exactly, not through a float
    assert telegram["records"][2]["value"] == "2012-01-24T13:43:00"
    assert telegram["records"][1]["value"] == "TEST CYBLE"
    assert telegram["records"][7]["value"] == "10011f"  # manufacturer data, wire order


def test_hex_without_spaces_lower_case_and_as_separate_tokens() -> None:
    joined = "".join(WATER.split()).lower()
    expected = run(["--json", WATER])[1]
    assert run(["--json", joined])[1] == expected
    assert run(["--json", *WATER.split()])[1] == expected


def test_stdin_one_frame_per_line_and_bad_frames_exit_non_zero() -> None:
    status, out, err = run(["--json", "-"], stdin=f"{WATER}\n{BAD_DATA}\n\n{BUSY}\n")
    assert status == 1
    lines = out.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1])["error"] == {"code": 8, "text": "application busy"}
    assert err == "line 2: DecodeError: premature end of record at data (at byte 32)\n"


def test_checksum_error_is_typed_with_offset() -> None:
    broken = WATER.split()
    broken[-2] = f"{(int(broken[-2], 16) + 1) & 0xFF:02X}"
    status, out, err = run([" ".join(broken)])
    assert status == 1 and out == ""
    assert err.startswith("input: ChecksumError: long frame checksum")
    assert f"(at byte {len(broken) - 2})" in err


def test_not_hex_is_an_error() -> None:
    status, _, err = run(["68 zz"])
    assert status == 1 and "not a hexadecimal digit" in err


def test_human_table() -> None:
    status, out, _ = run([WATER])
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("CI 0x72  id 12000071  manufacturer ACW  version 20")
    assert "medium 0x07 (water)" in lines[0]
    assert lines[1].split()[:3] == ["#", "function", "stor"]
    assert "123.49" in lines[6] and "m³" in lines[6] and "0414" in lines[6]
    assert len(lines) == 2 + 8


def case_telegrams(source_file: str, name: str) -> list[str]:
    """A public wireless vector's telegrams (tests/data/wmbus, sources and licences in its
    README)."""
    for line in (WMBUS / "cases.jsonl").read_text().splitlines():
        case = json.loads(line)
        if (case["source_file"], case["test_name"]) == (source_file, name):
            return case["telegrams_hex"]
    raise LookupError(name)


def test_a_proprietary_configuration_word_decodes_as_the_read_path_does() -> None:
    # libmbus example_data_01: configuration word 27 B6 (mode 22) over plain records
    status, out, err = run(["--json", EXAMPLE])
    assert status == 0 and err == ""
    telegram = json.loads(out)
    assert telegram["configuration_ignored"] is True
    assert telegram["security"] == {
        "mode": 22,
        "name": "proprietary use of the configuration field",
        "state": "ignored",
    }
    frame = bytes.fromhex("".join(EXAMPLE.split()))
    read = decode(frame)  # what `mbusgw read` stores
    assert read.configuration_ignored
    assert telegram["records"] == json.loads(dumps(read.to_dict()))["records"]
    status, out, _ = run([EXAMPLE])
    assert status == 0
    assert "configuration word 0xB627 ignored: its security mode 22 names no encryption" in out


def test_manufacturer_data_is_hex_without_control_characters() -> None:
    # wmbusmeters qwaterv2 "QQ5#3": a Qundis record 0D FF 5F with 53 bytes of the maker's data
    (telegram,) = case_telegrams("drivers/src/qwaterv2.xmq", "QQ5#3")
    status, out, err = run(["--json", telegram])
    assert status == 0 and err == ""
    (record, _time) = json.loads(out)["records"]
    assert record["dif_vif"] == "0DFF5F"
    assert record["value"] == telegram.lower()[telegram.lower().index("0dff5f35") + 8 :][:106]
    assert not any(ord(c) < 0x20 for c in out.strip())


def test_a_binary_number_of_variable_length_is_a_number() -> None:
    body = bytes.fromhex("08017278563412430401072A000000" + "0D03F0" + "39300000" + "00" * 12)
    frame = bytes((0x68, len(body), len(body), 0x68)) + body + bytes((sum(body) & 0xFF, 0x16))
    status, out, _ = run(["--json", frame.hex()])
    assert status == 0
    assert json.loads(out)["records"][0]["value"] == 12345


def test_a_known_meters_compact_frame_decodes_alone() -> None:
    # wmbusmeters kamheat "Heato#2": the compact frame without the full frame before it
    _full, compact = case_telegrams("drivers/src/kamheat.xmq", "Heato#2")
    status, out, err = run(["--json", compact])
    assert status == 0 and err == ""
    telegram = json.loads(out)
    assert telegram["link"]["payload_kind"] == "records"
    energy = [r for r in telegram["records"] if r["quantity"] == "energy"]
    # wmbusmeters gives total_energy_consumption_kwh 68457
    assert energy and energy[0]["value"] == 68457000
    status, out, _ = run([compact])
    assert "compact frame CI 0x79 rebuilt" in out


def test_an_unknown_compact_signature_still_needs_its_full_frame() -> None:
    (compact,) = case_telegrams("drivers/src/kamwater.xmq", "MyTapWater#2")
    status, out, err = run(["--json", compact])
    assert status == 1 and out == ""
    assert "LayoutUnknownError" in err and "0xA8ED" in err
