"""The build: packaging configuration and the rules of the Makefile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_data_folder_is_packaged_without_setuptools_warnings(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    for folder in ("core", "gateway", "web"):
        for data in (ROOT / folder).rglob("*"):
            if data.is_file() and data.parent.name in ("frames", "static", "templates"):
                assert (tmp_path / "mbusgw" / data.relative_to(ROOT)).is_file(), data


def test_a_newer_vif_table_file_does_not_make_the_build_regenerate_the_header() -> None:
    """A clone sets file times in any order: the committed header is not remade from them."""
    planned = subprocess.run(
        ["make", "-n", "-W", "core/vif_table.csv", "-W", "core/units.py", "install"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert planned.returncode == 0, planned.stderr
    assert "gen_vif_table" not in planned.stdout
