"""``mbusgw decode`` with wireless telegrams: detection, keys from the command line and from a
key file, the "link" object, compact frames within one run, and the error for each failure."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

from mbusgw.core.wmbus import add_crc_format_a
from mbusgw.gateway import cli

N21 = (
    "2E4493157856341233037A2A0020255923C95AAA26D1B2E7493B013EC4A6F6D3529B520EDFF0EA6DEFC99D6D69EBF3"
)
N21_KEY = "0102030405060708090A0B0C0D0E0F11"
KAM_FULL = (
    "40442D2C713785691C0C8D2066445050201E5E780406A60B000004FF074E11000004FF0813070000"
    "0414C91A000002FD170000043B000000000259B10B025D67095B"
)
KAM_COMPACT = (
    "31442D2C713785691C0C8D2067585050202A4479C4D788B0A60B00004E11000013070000C91A0000"
    "000000000000B10B67095B"
)
# OMS Vol. 2 N.5.4 (wired, mode 5, partial encryption) with its checksum and stop byte added.
WIRED_MODE5 = (
    "682C2C6808FD7288776655934455080004100500DFE2A782146D1513581CD2F83F39040CFD10785634120C78"
    "443322112616"
)
WIRED_KEY = "000102030405060708090A0B0C0D0E0F"


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    args = cli.build_parser().parse_args(["decode", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = args.func(args, stdin=io.StringIO(stdin), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_wireless_json_has_the_wired_shape_and_a_link_object() -> None:
    framed = add_crc_format_a(bytes.fromhex(N21)).hex()
    status, out, err = run(["--json", "--key", N21_KEY, framed])
    assert (status, err) == (0, "")
    telegram = json.loads(out, parse_float=Decimal)
    assert telegram["header"]["id"] == "12345678"
    assert telegram["records"][0]["value"] == Decimal("28504.27")
    link = telegram["link"]
    assert link["format"] == "A"
    assert link["tpl"]["security_mode"] == 5
    assert link["decryption"] == "decrypted"
    assert N21_KEY not in out


def test_keys_from_a_csv_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.csv"
    keys.write_text(
        "Address,Key,Manufacturer,DeviceType,Version\n"
        f"-1,{WIRED_KEY},*,-1,-1\n"
        f"12345678,{N21_KEY},ELS,3,51\n"
    )
    status, out, err = run(["--keys", str(keys), N21])
    assert status == 0, err
    assert "security mode 5" in out and "28504.27" in out


def test_a_bad_key_file_is_refused_with_masked_rows(tmp_path: Path) -> None:
    keys = tmp_path / "keys.csv"
    keys.write_text(f"Address,Key,Manufacturer,DeviceType,Version\n123,{N21_KEY[:-1]},ELS,3,51\n")
    status, out, err = run(["--keys", str(keys), N21])
    assert status == 2 and out == ""
    assert "line 2, column Key" in err
    assert N21_KEY[:-1] not in err
    assert run(["--keys", str(tmp_path / "missing.csv"), N21])[0] == 2
    assert run(["--key", "12", N21])[0] == 2


def test_missing_and_wrong_keys_are_told_apart() -> None:
    status, _, err = run([N21])
    assert status == 1
    assert "MissingKeyError" in err and "--key" in err
    status, _, err = run(["--key", WIRED_KEY, N21])
    assert status == 1
    assert "DecryptError" in err and "wrong key" in err


def test_damage_and_a_given_frame_format() -> None:
    framed = bytearray(add_crc_format_a(bytes.fromhex(N21)))
    framed[30] ^= 0x10
    status, _, err = run(["--key", N21_KEY, framed.hex()])
    assert status == 1 and "ChecksumError: format A block 2" in err
    b_frame = "1444AE0C7856341201078C2027780B134365877AC4"  # format B, last CRC byte broken
    status, _, err = run([b_frame])  # read as a stripped telegram when not told otherwise,
    assert status == 1 and "DecodeError" in err  # its CRC bytes then break the last record
    status, _, err = run(["--format", "B", b_frame])
    assert status == 1 and "ChecksumError" in err


def test_compact_frames_use_the_full_frame_of_the_same_run() -> None:
    status, out, err = run(["--json", KAM_FULL, KAM_COMPACT])
    assert status == 0, err
    full, compact = (json.loads(line) for line in out.splitlines())
    assert compact["records"] == full["records"]
    assert compact["link"]["tpl"]["payload"] == "compact"
    # alone it decodes too: its layout is among those the package ships (docs/core.md)
    status, out, err = run(["--json", KAM_COMPACT])
    assert status == 0, err
    assert json.loads(out)["records"] == full["records"]


def test_stdin_lines_and_byte_tokens() -> None:
    status, out, _ = run(["--json", "--key", N21_KEY, "-"], stdin=f"{N21}\n{N21.lower()}\n")
    assert status == 0 and len(out.splitlines()) == 2
    tokens = [N21[i : i + 2] for i in range(0, len(N21), 2)]
    assert run(["--key", N21_KEY, *tokens])[0] == 0


def test_wired_frames_with_an_encrypted_transport_layer() -> None:
    status, out, err = run(["--json", "--key", WIRED_KEY, WIRED_MODE5])
    assert status == 0, err
    telegram = json.loads(out)
    assert telegram["security"] == {
        "mode": 5,
        "name": "AES-128-CBC, IV from the header",
        "state": "decrypted",
    }
    assert [r["value"] for r in telegram["records"]][:3] == [1234, "2007-04-30", 23456]
    status, _, err = run([WIRED_MODE5])
    assert status == 1 and "MissingKeyError" in err
