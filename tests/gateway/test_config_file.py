"""Configuration files: TOML out, everything checked on the way in, all or nothing."""

from __future__ import annotations

import math
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from storekit import T0, open_store

from mbusgw.gateway.settings import ConfigError, Settings
from mbusgw.gateway.store.configfile import export_config, read_config
from mbusgw.gateway.store.toml_writer import dumps

HEAD = '[mbusgw]\nfile = "configuration"\nversion = 1\n'
CHANGED = {
    "log": {"min_level": -1, "status_byte": "on_error"},
    "store": {"log_max_days": 20, "raw_days": 30},
    "reading": {"schedule": "*/5 * * * *"},
}


def test_a_configuration_moves_to_another_gateway(tmp_path) -> None:
    source = open_store(tmp_path / "a")
    source.update_settings({**CHANGED, "store": {**CHANGED["store"], "max_bytes": 2**31}})
    path = tmp_path / "gateway.toml"
    export_config(source.stored_settings(), path, T0)
    text = path.read_text()
    assert "[settings.store]" in text and "\nmax_bytes" not in text  # device-specific: stays home
    target = open_store(tmp_path / "b")
    target.update_settings(read_config(path))
    moved = target.stored_settings()
    assert moved.log == source.settings.log and moved.reading == source.settings.reading
    assert moved.store.raw_days == 30 and moved.store.max_bytes != 2**31


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("this is not toml", "not valid TOML"),
        ('[mbusgw]\nfile = "backup"\nversion = 1\n', "not an mbusgw configuration"),
        ('[mbusgw]\nfile = "configuration"\nversion = 7\n', "mbusgw.version: 7"),
        (HEAD + "[extra]\na = 1\n", "extra: unknown table"),
        (
            HEAD + "[settings.store]\nraw_days = 1\nlog_max_days = 0\n",
            "store.log_max_days: must be",
        ),
        (HEAD + '[settings.log]\nmin_level = "low"\n', "log.min_level: must be a whole number"),
        (HEAD + "[settings.log]\ncolour = 1\n", "log.colour: unknown setting"),
        (HEAD + "[settings.store]\nmax_bytes = 99999999\n", "store.max_bytes: device-specific"),
        (HEAD + '[settings.log]\nstatus_byte = "sometimes"\n', "log.status_byte: must be one of"),
        (HEAD + '[settings.reading]\nschedule = "61 * * * *"\n', "reading.schedule"),
    ],
)
def test_a_bad_file_is_refused_and_nothing_changes(tmp_path, text: str, complaint: str) -> None:
    store = open_store(tmp_path)
    store.update_settings(CHANGED)
    before = store.stored_settings()
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        store.update_settings(read_config(path))
    assert complaint in str(raised.value)
    assert store.stored_settings() == before


def test_every_error_of_a_file_is_reported_at_once(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(HEAD + "[settings.log]\nmin_level = 9\nstatus_byte = 1\n")
    with pytest.raises(ConfigError) as raised:
        read_config(path)
    assert set(raised.value.errors) == {"log.min_level", "log.status_byte"}


def test_truncated_and_binary_files(tmp_path) -> None:
    store = open_store(tmp_path)
    path = tmp_path / "gateway.toml"
    export_config(store.stored_settings(), path, T0)
    whole = path.read_bytes()
    # cut inside a string: a cut after a number's first digits still parses (TOML cannot tell),
    # so the cut near the end goes into the last string, whichever setting comes last
    inside_a_string = whole.index(b'= "', len(whole) // 2) + 3
    inside_the_last_string = whole.rindex(b'= "') + 3
    for cut in (10, inside_a_string, inside_the_last_string):
        path.write_bytes(whole[:cut])
        with pytest.raises(ConfigError):
            read_config(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ConfigError, match="not UTF-8|not valid TOML"):
        read_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(tmp_path / "missing.toml")


def test_a_settings_change_is_checked_in_the_transaction(tmp_path) -> None:
    store = open_store(tmp_path)
    with pytest.raises(ConfigError, match="store.raw_days"):
        store.update_settings({"store": {"raw_days": -1}, "log": {"min_level": -1}})
    assert store.stored_settings() == Settings()


def test_stored_settings_this_version_rejects_fall_back_to_defaults(tmp_path) -> None:
    store = open_store(tmp_path)
    store.update_settings({"log": {"min_level": -1}})
    store.write(
        lambda ctx: ctx.txn.put(b"store", b'{"raw_days": -5, "gone": 1}', db=ctx.db.settings)
    )
    settings = store.stored_settings()
    assert settings.store == Settings().store and settings.log.min_level == -1


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


def test_per_meter_modbus_settings_round_trip() -> None:
    from mbusgw.gateway.settings import Settings
    from mbusgw.gateway.store.configfile import parse_config, render_config

    settings = Settings().updated({"modbus": {"meters": {"12345678": {"unit_id": 7}}}})
    text = render_config(settings, 1_700_000_000)
    assert parse_config(text)["modbus"]["meters"]["12345678"]["unit_id"] == 7
