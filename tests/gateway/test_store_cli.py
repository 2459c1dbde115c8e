"""The store's commands: backup, restore, config export/import, store stats/export/check."""

from __future__ import annotations

import csv
import io

import pytest
from storekit import heat_reading, open_store

from mbusgw.gateway.cli import main
from mbusgw.gateway.store import Store, store_path


@pytest.fixture
def data_dir(tmp_path):
    store = open_store(tmp_path / "data")
    store.put_readings([heat_reading("12345678", i) for i in range(8)])
    store.close()
    return tmp_path / "data"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_stats(capsys, data_dir) -> None:
    code, out, _ = run(capsys, "store", "stats", "--data-dir", str(data_dir))
    assert code == 0
    assert "values             32" in out and "oldest reading     2023-11-15T00:00:07Z" in out


def test_export_csv_and_table(capsys, data_dir) -> None:
    args = ("store", "export", "--meter", "12345678", "--data-dir", str(data_dir))
    code, out, _ = run(
        capsys, *args, "--from", "2023-11-15T00:15", "--to", "2023-11-15T00:45", "--csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["received_at"], r["quantity"], r["value"]) for r in rows[:4]] == [
        ("2023-11-15T00:15:07Z", "energy", "12003"),
        ("2023-11-15T00:15:07Z", "volume", "456.800"),
        ("2023-11-15T00:15:07Z", "flow_temperature", "65.1"),
        ("2023-11-15T00:15:07Z", "fabrication_number", "A12345678"),
    ]
    assert len(rows) == 8
    code, out, _ = run(capsys, *args, "--to", "2023-11-15")  # a bare date: the whole day
    assert code == 0 and len(out.splitlines()) == 1 + 32


def test_export_of_an_unknown_meter_fails_clearly(capsys, data_dir) -> None:
    code, _, err = run(capsys, "store", "export", "--meter", "nobody", "--data-dir", str(data_dir))
    assert code == 1 and "no meter 'nobody'" in err


def test_backup_and_restore(capsys, tmp_path, data_dir) -> None:
    backup = tmp_path / "gw.backup"
    code, out, _ = run(capsys, "backup", str(backup), "--data-dir", str(data_dir))
    assert code == 0 and "32 values" in out
    other = tmp_path / "other"
    code, out, _ = run(capsys, "restore", str(backup), "--check", "--data-dir", str(other))
    assert code == 0 and "8 readings" in out
    store = Store.open(store_path(other), readonly=True)
    assert store.stats().values == 32
    assert "restored" in store.system_log()[-1].text
    store.close()
    backup.write_bytes(backup.read_bytes()[:-1])
    code, _, err = run(capsys, "restore", str(backup), "--data-dir", str(other))
    assert code == 1 and "truncated" in err


def test_config_export_and_import(capsys, tmp_path, data_dir) -> None:
    path = tmp_path / "gw.toml"
    assert run(capsys, "config", "export", str(path), "--data-dir", str(data_dir))[0] == 0
    text = path.read_text().replace("min_level = 0", "min_level = -1")
    path.write_text(text)
    code, out, _ = run(capsys, "config", "import", str(path), "--data-dir", str(data_dir))
    assert code == 0 and "settings imported" in out
    path.write_text(text.replace("max_days = 31", "max_days = -5"))
    code, _, err = run(capsys, "config", "import", str(path), "--data-dir", str(data_dir))
    assert code == 1 and "store.log_max_days: must be between 1 and 3660" in err
    store = Store.open(store_path(data_dir), readonly=True)
    settings = store.stored_settings()
    assert settings.log.min_level == -1 and settings.store.log_max_days == 31
    store.close()


def test_check(capsys, data_dir) -> None:
    code, out, _ = run(capsys, "store", "check", "--data-dir", str(data_dir))
    assert code == 0 and "store is consistent" in out


def test_commands_on_a_missing_store_fail_clearly(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "store", "stats", "--data-dir", str(tmp_path / "none"))
    assert code == 1 and "no store at" in err
    assert not (tmp_path / "none").exists()  # a read-only command creates nothing
