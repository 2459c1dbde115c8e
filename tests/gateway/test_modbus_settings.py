"""The Modbus settings section: defaults, per-field errors, per-meter and per-series tables."""

from __future__ import annotations

import pytest

from mbusgw.gateway.settings import ConfigError, Settings, settings_from_dict


def test_defaults_and_round_trip() -> None:
    modbus = Settings().modbus
    assert (modbus.port, modbus.unit_id, modbus.max_connections) == (1502, 1, 10)
    assert (modbus.data_type, modbus.constant, modbus.word_order) == ("float32", "1", "big")
    assert modbus.invalid_addresses == "exception" and modbus.meters == {}
    changed = Settings().updated(
        {
            "modbus": {
                "meters": {"12345678": {"unit_id": 3, "series": {"0C13": {"constant": "0.1"}}}}
            }
        }
    )
    assert settings_from_dict(changed.to_dict()) == changed
    assert changed.modbus.meters["12345678"].series["0C13"].constant == "0.1"
    assert changed.changed_sections(Settings()) == {"modbus"}


def test_every_bad_modbus_field_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings().updated(
            {
                "modbus": {
                    "host": "gateway.local",
                    "port": 70000,
                    "unit_id": 0,
                    "max_connections": 0,
                    "data_type": "int8",
                    "constant": "0",
                    "invalid_addresses": "ignore",
                    "word_order": "middle",
                    "meters": {
                        "A": {"unit_id": 300, "data_type": "real", "constant": "x"},
                        "B": {"series": {"ZZ": {}, "0C13": {"constant": "1e20", "colour": 1}}},
                        "C": "yes",
                    },
                }
            }
        )
    assert set(caught.value.errors) == {
        "modbus.host",
        "modbus.port",
        "modbus.unit_id",
        "modbus.max_connections",
        "modbus.data_type",
        "modbus.constant",
        "modbus.invalid_addresses",
        "modbus.word_order",
        "modbus.meters.A.unit_id",
        "modbus.meters.A.data_type",
        "modbus.meters.A.constant",
        "modbus.meters.B.series.ZZ",
        "modbus.meters.B.series.0C13.constant",
        "modbus.meters.B.series.0C13.colour",
        "modbus.meters.C",
    }
    assert caught.value.errors["modbus.constant"] == "must be a finite number other than 0"


def test_unit_ids_must_be_unique_and_not_the_gateways() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings().updated(
            {
                "modbus": {
                    "unit_id": 5,
                    "meters": {"A": {"unit_id": 7}, "B": {"unit_id": 7}, "C": {"unit_id": 5}},
                }
            }
        )
    assert caught.value.errors == {
        "modbus.meters.B.unit_id": "unit id 7 is taken by meter A",
        "modbus.meters.C.unit_id": "unit id 5 is taken by the gateway",
    }
    assert Settings().modbus.meters == {}  # nothing changed
