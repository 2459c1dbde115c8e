"""Configuration files: TOML out, everything checked on the way in, all or nothing."""

from __future__ import annotations

import math
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from storekit import T0, open_store

from mbusgw.gateway.errors import ConfigError
from mbusgw.gateway.store.configfile import export_config, portable_settings, read_config
from mbusgw.gateway.store.toml_writer import dumps

HEAD = '[mbusgw]\nfile = "configuration"\nversion = 1\n'
CHANGED = {
    "syslog.min_level": -1,
    "syslog.max_days": 20,
    "meterlog.status_byte": "on_error",
    "retention.raw_days": 30,
}


def test_a_configuration_moves_to_another_gateway(tmp_path) -> None:
    source = open_store(tmp_path / "a")
    source.set_settings({**CHANGED, "store.max_bytes": 2**31})
    path = tmp_path / "gateway.toml"
    assert export_config(source.all_settings(), path, T0) == len(portable_settings({}))
    text = path.read_text()
    assert "max_bytes = 2147483648" not in text  # device-specific: stays home
    target = open_store(tmp_path / "b")
    target.set_settings(read_config(path))
    moved = target.all_settings()
    assert {name: moved[name] for name in CHANGED} == CHANGED
    assert moved["store.max_bytes"] != 2**31


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("this is not toml", "not valid TOML"),
        ('[mbusgw]\nfile = "backup"\nversion = 1\n', "not an mbusgw configuration"),
        ('[mbusgw]\nfile = "configuration"\nversion = 7\n', "version 7"),
        ('[mbusgw]\nfile = "configuration"\nversion = 1\n[extra]\na = 1\n', "unknown table"),
        (
            '[mbusgw]\nfile = "configuration"\nversion = 1\n[settings.syslog]\nmin_level = 0\n'
            "max_days = 0\n",
            "syslog.max_days: 0 is outside",
        ),
        (
            '[mbusgw]\nfile = "configuration"\nversion = 1\n[settings.syslog]\nmin_level = "low"\n',
            "syslog.min_level: expected an integer",
        ),
        (
            '[mbusgw]\nfile = "configuration"\nversion = 1\n[settings.syslog]\ncolour = 1\n',
            "syslog.colour: unknown setting",
        ),
        (
            HEAD + "[settings.store]\nmax_bytes = 99999999\n",
            "store.max_bytes: device-specific",
        ),
        (
            '[mbusgw]\nfile = "configuration"\nversion = 1\n[settings.meterlog]\n'
            'status_byte = "sometimes"\n',
            "'sometimes' is not one of",
        ),
    ],
)
def test_a_bad_file_is_refused_and_nothing_changes(tmp_path, text: str, complaint: str) -> None:
    store = open_store(tmp_path)
    store.set_settings(CHANGED)
    before = store.all_settings()
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        store.set_settings(read_config(path))
    assert complaint in str(raised.value)
    assert store.all_settings() == before


def test_truncated_and_binary_files(tmp_path) -> None:
    store = open_store(tmp_path)
    path = tmp_path / "gateway.toml"
    export_config(store.all_settings(), path, T0)
    whole = path.read_bytes()
    for cut in (10, len(whole) // 2, len(whole) - 3):
        path.write_bytes(whole[:cut])
        with pytest.raises(ConfigError):
            read_config(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ConfigError, match="not UTF-8|not valid TOML"):
        read_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(tmp_path / "missing.toml")


KEYS = st.text(min_size=1, max_size=12)
SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=30),
)
TABLES = st.recursive(
    st.dictionaries(KEYS, st.one_of(SCALARS, st.lists(SCALARS, max_size=4)), max_size=4),
    lambda inner: st.dictionaries(KEYS, inner, min_size=1, max_size=3),
    max_leaves=12,
)


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.property
@given(TABLES)
def test_the_toml_writer_round_trips_through_tomllib(document: dict) -> None:
    assert same(tomllib.loads(dumps(document)), document)
