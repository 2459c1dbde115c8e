"""Report settings: what is accepted, and bad settings refused with a clear error per field."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_receivers import make_certificates
from storekit import T0, FixedClock, open_store

from mbusgw.gateway.settings import SECRET_MASK, ConfigError, Settings, without_masks
from mbusgw.gateway.store.configfile import export_config, read_config

GOOD = {
    "email": {"host": "mail.example.com", "recipients": "data@example.com"},
    "ftp": {"host": "ftp.example.com", "security": "explicit", "username": "u", "password": "p"},
    "http": {
        "uri": "https://head-end.example.com:8443/in",
        "auth": "basic",
        "username": "u",
        "password": "p",
    },
    "reports": {
        "mail": {"template": 1101, "schedule": "daily", "value_interval": "hour"},
        "files": {"template": 2112, "schedule": "0 6 * * 1-5|30 18 * * *", "value_period": "2d"},
        "post": {"template": 3130, "schedule": "?0-29 * * * *", "value_period": "90min"},
        "alarms": {"kind": "event", "template": 1201, "events": "meter_failed, report_failed"},
        "now": {"kind": "on_demand", "template": 3101},
    },
}


def refused(changes: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        Settings().updated({"reports": changes})
    return caught.value.errors


def test_defaults() -> None:
    reports = Settings().reports
    assert reports.reports == {} and reports.adaptive_retries
    assert (reports.timeouts.email_s, reports.timeouts.ftp_s, reports.timeouts.http_s) == (
        60,
        60,
        60,
    )


def test_a_full_configuration_is_accepted() -> None:
    settings = Settings().updated({"reports": GOOD})
    assert sorted(settings.reports.reports) == ["alarms", "files", "mail", "now", "post"]
    assert settings.reports.reports["post"].value_period == "90min"


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        (
            {"reports": {"r": {"template": 1999}}},
            "reports.reports.r.template",
            "unknown template 1999",
        ),
        ({"reports": {"r": {"template": 4101}}}, "reports.reports.r.template", "unknown template"),
        ({"http": {"uri": "ftp://x.example.com/"}}, "reports.http.uri", "must start with http"),
        ({"http": {"uri": "https://u:p@x.example.com/"}}, "reports.http.uri", "their own settings"),
        ({"http": {"uri": "https:///path"}}, "reports.http.uri", "no valid host"),
        ({"http": {"uri": "http://bad host/"}}, "reports.http.uri", "no valid host"),
        ({"ftp": {"host": "ftp://x.example.com"}}, "reports.ftp.host", "not a host name"),
        ({"email": {"recipients": "a@b.c, nobody"}}, "reports.email.recipients", "nobody"),
        ({"email": {"username": "me"}}, "reports.email.username", "needs a password"),
        ({"ftp": {"username": "me"}}, "reports.ftp.username", "needs a password"),
        (
            {"http": {"auth": "basic", "username": "me"}},
            "reports.http.auth",
            "user name and a password",
        ),
        ({"timeouts": {"http_s": 0}}, "reports.timeouts.http_s", "use -1 for none"),
        ({"timeouts": {"ftp_s": -2}}, "reports.timeouts.ftp_s", "between -1 and 3600"),
        ({"trusted_certificates": "not a certificate"}, "reports.trusted_certificates", "PEM"),
        ({"reports": {"bad name": {}}}, "reports.reports.bad name", "not a report name"),
        ({"reports": {"r": {"schedule": "61 * * * *"}}}, "reports.reports.r.schedule", "61"),
        ({"reports": {"r": {"value_period": "3 weeks"}}}, "reports.reports.r.value_period", "auto"),
        (
            {"reports": {"r": {"value_interval": "2h"}}},
            "reports.reports.r.value_interval",
            "one of",
        ),
        (
            {"reports": {"r": {"events": "meter_exploded"}}},
            "reports.reports.r.events",
            "unknown event",
        ),
        ({"reports": {"r": {"kind": "sometimes"}}}, "reports.reports.r.kind", "one of"),
    ],
)
def test_bad_settings_are_refused(changes: dict, path: str, message: str) -> None:
    errors = refused(changes)
    assert path in errors, errors
    assert message in errors[path]


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"template": 1101}, "needs an SMTP server"),
        ({"template": 2101}, "needs a server"),
        ({"template": 3101}, "needs an address"),
        ({"kind": "event", "template": 3101}, "needs an event template"),
        ({"template": 3201, "http": {"uri": "http://x.example.com/"}}, "needs a value template"),
    ],
)
def test_a_report_without_receiver_or_with_the_wrong_template_is_refused(report, message) -> None:
    errors = refused({"reports": {"r": report}})
    assert message in errors["reports.reports.r"]
    # a disabled report may be incomplete
    Settings().updated({"reports": {"reports": {"r": report | {"enabled": False}}}})


def test_e_mail_needs_recipients_somewhere() -> None:
    errors = refused({"email": {"host": "mail.example.com"}, "reports": {"r": {"template": 1101}}})
    assert "needs recipients" in errors["reports.reports.r"]
    Settings().updated(
        {
            "reports": {
                "email": {"host": "mail.example.com"},
                "reports": {"r": {"template": 1101, "recipients": "me@example.com"}},
            }
        }
    )


def test_a_refused_change_changes_nothing(tmp_path: Path) -> None:
    store = open_store(tmp_path, FixedClock(T0))
    store.update_settings({"reports": GOOD})
    before = store.stored_settings()
    with pytest.raises(ConfigError):
        store.update_settings(
            {"reports": {"reports": {"mail": {"template": 1999}}, "adaptive_retries": False}}
        )
    assert store.stored_settings() == before


def test_reports_and_trust_store_survive_a_configuration_file(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    settings = Settings().updated({"reports": GOOD | {"trusted_certificates": certs.ca_pem}})
    export_config(settings, tmp_path / "gw.toml", T0, secrets=True)
    changes = read_config(tmp_path / "gw.toml")
    assert Settings().updated(changes).reports == settings.reports


def test_a_configuration_file_without_passwords_keeps_the_stored_ones(tmp_path: Path) -> None:
    source = open_store(tmp_path / "a", FixedClock(T0))
    source.update_settings({"reports": GOOD})
    path = tmp_path / "gw.toml"
    export_config(source.stored_settings(), path, T0)  # passwords are left out by default
    text = path.read_text()
    assert 'password = "p"' not in text and f'password = "{SECRET_MASK}"' in text
    source.update_settings({"reports": {"ftp": {"directory": "elsewhere"}}})
    source.update_settings(read_config(path))
    restored = source.stored_settings().reports
    assert restored.ftp.password == "p" and restored.ftp.directory == GOOD["ftp"].get(
        "directory", ""
    )
    # a gateway that has no password to keep refuses the file, naming the setting
    other = open_store(tmp_path / "b", FixedClock(T0))
    with pytest.raises(ConfigError, match="reports.ftp.username: a user name needs a password"):
        other.update_settings(read_config(path))
    assert other.stored_settings() == Settings()


def test_only_a_password_given_as_the_mask_is_left_out_of_a_change() -> None:
    change = {
        "identity": {"device_name": SECRET_MASK},
        "reports": {"http": {"password": SECRET_MASK, "username": "u"}},
        "modbus": {"meters": {"m1": {"constant": "2"}}},
    }
    assert without_masks(change) == {
        "identity": {"device_name": SECRET_MASK},
        "reports": {"http": {"username": "u"}},
        "modbus": {"meters": {"m1": {"constant": "2"}}},
    }


def test_an_entry_given_as_none_is_removed_from_its_table() -> None:
    five = Settings().updated({"reports": GOOD})
    fewer = five.updated({"reports": {"reports": {"mail": None, "now": None}}})
    assert sorted(fewer.reports.reports) == ["alarms", "files", "post"]
    assert fewer.reports.reports["files"] == five.reports.reports["files"]
    with pytest.raises(ConfigError, match="reports.adaptive_retries: must be true or false"):
        fewer.updated({"reports": {"adaptive_retries": None}})
    with pytest.raises(ConfigError, match="reports.reports: must be a table"):
        fewer.updated({"reports": {"reports": None}})
