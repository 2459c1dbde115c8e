"""Settings: defaults, validation with dotted paths, partial updates, the start-up file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbusgw.gateway.settings import ConfigError, Settings, load_startup, settings_from_dict


def test_defaults_round_trip() -> None:
    settings = Settings()
    assert settings_from_dict(settings.to_dict()) == settings
    assert settings.reading.schedule == "every_15_minutes"
    assert settings.mbus.timing.read_retries == 2


def test_every_bad_field_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(
            {
                "capacity": 100,
                "timezone": "Mars/Olympus",
                "reading": {"schedule": "*/15 * * *", "continuous": "yes"},
                "mbus": {"timing": {"read_retries": 99, "colour": 1}},
                "identity": {"device_name": "x" * 65},
                "surprise": {},
            }
        )
    assert set(caught.value.errors) == {
        "capacity",
        "timezone",
        "reading.schedule",
        "reading.continuous",
        "mbus.timing.read_retries",
        "mbus.timing.colour",
        "identity.device_name",
        "surprise",
    }
    assert caught.value.errors["mbus.timing.read_retries"] == "must be between 0 and 10"
    assert "5 fields" in caught.value.errors["reading.schedule"]


def test_partial_update_and_changed_sections() -> None:
    settings = Settings()
    updated = settings.updated({"reading": {"continuous": True}, "mbus": {"multi_telegram": "off"}})
    assert updated.reading.continuous and updated.reading.schedule == "every_15_minutes"
    assert updated.changed_sections(settings) == {"reading", "mbus"}
    with pytest.raises(ConfigError):
        settings.updated({"reading": {"schedule": "?70 * * * *"}})
    assert settings.reading.schedule == "every_15_minutes"  # unchanged


def test_startup_file(tmp_path: Path) -> None:
    path = tmp_path / "mbusgw.toml"
    path.write_text(
        'data_dir = "data"\n[web]\nport = 8081\n'
        '[[interfaces]]\nname = "line1"\nkind = "tcp"\nhost = "127.0.0.1"\nport = 10001\n'
        '[[interfaces]]\nname = "sim"\nkind = "simulator"\nmeters = 20\nbaud = 9600\n'
    )
    config = load_startup(path)
    assert config.web_port == 8081 and str(config.data_dir) == "data"
    assert [(i.name, i.kind, i.port, i.meters) for i in config.interfaces] == [
        ("line1", "tcp", 10001, 8),
        ("sim", "simulator", None, 20),
    ]
    assert load_startup(path, data_dir=tmp_path).data_dir == tmp_path


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("web = 3 = 4", "mbusgw.toml"),
        ("[web]\nport = 70000\n", "web.port"),
        ('[[interfaces]]\nname = "a"\nkind = "usb"\n', "interfaces[0].kind"),
        ('[[interfaces]]\nname = "a"\nkind = "serial"\n', "interfaces[0].device"),
        ('[[interfaces]]\nname = "a"\nkind = "tcp"\nhost = "h"\n', "interfaces[0].host"),
        (
            '[[interfaces]]\nname="a"\nkind="simulator"\n[[interfaces]]\nname="a"\nkind="simulator"',
            "interfaces.a",
        ),
    ],
)
def test_bad_startup_files(tmp_path: Path, text: str, path: str) -> None:
    file = tmp_path / "mbusgw.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_startup(file)
    assert any(key.endswith(path) for key in caught.value.errors), caught.value.errors


def test_wireless_receivers_in_the_startup_file(tmp_path: Path) -> None:
    path = tmp_path / "mbusgw.toml"
    path.write_text(
        '[[interfaces]]\nname = "stick"\nkind = "im871a"\ndevice = "/dev/ttyUSB0"\n'
        'link_mode = "c1+t1"\n'
        '[[interfaces]]\nname = "amber"\nkind = "amb8465"\ndevice = "/dev/ttyUSB1"\n'
        'baud = 115200\nlink_mode = "T1"\n'
        '[[interfaces]]\nname = "radio"\nkind = "hex_tcp"\nhost = "::1"\nport = 5000\n'
        '[[interfaces]]\nname = "sim"\nkind = "simulated_receiver"\nprotocol = "amb8465"\n'
        "interval = 2.5\n"
    )
    config = load_startup(path)
    got = [(i.name, i.kind, i.baud, i.link_mode, i.wireless) for i in config.interfaces]
    assert got == [
        ("stick", "im871a", 57600, "T1+C1", True),
        ("amber", "amb8465", 115200, "T1", True),
        ("radio", "hex_tcp", 2400, "T1+C1", True),
        ("sim", "simulated_receiver", 2400, "T1+C1", True),
    ]
    sim = config.interfaces[-1]
    assert (sim.protocol, sim.interval, sim.meters) == ("amb8465", 2.5, 4)


@pytest.mark.parametrize(
    ("interface", "errors"),
    [
        ('kind = "im871a"', {"device"}),
        ('kind = "amb8465"\ndevice = "/dev/x"\nlink_mode = "N2"', {"link_mode"}),
        ('kind = "im871a"\ndevice = "/dev/x"\nbaud = 1234', {"baud"}),
        ('kind = "hex_tcp"\nhost = "h"\nport = 0', {"host"}),
        ('kind = "hex_tcp"\nhost = "h"\nport = 1\nbaud = 9600\ninterval = 3', {"baud", "interval"}),
        ('kind = "simulated_receiver"\nprotocol = "rtl"\ninterval = 0\nmeters = 99', None),
        ('kind = "serial"\ndevice = "/dev/x"\nlink_mode = "T1"', {"link_mode"}),
    ],
)
def test_bad_receivers_are_refused_naming_each_field(
    tmp_path: Path, interface: str, errors: set[str] | None
) -> None:
    file = tmp_path / "mbusgw.toml"
    file.write_text(f'[[interfaces]]\nname = "r"\n{interface}\n')
    with pytest.raises(ConfigError) as caught:
        load_startup(file)
    named = {key.rsplit(".", 1)[1] for key in caught.value.errors}
    assert named == (errors or {"protocol", "interval", "meters"}), caught.value.errors


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("web = 5\n", "web"),
        ("interfaces = 5\n", "interfaces"),
        ("data_dir = 5\n", "data_dir"),
        ('interfaces = ["a"]\n', "interfaces[0]"),
        ("[web]\nhost = 5\n", "web.host"),
        ('[[interfaces]]\nname = 5\nkind = "simulator"\n', "interfaces[0].name"),
        ('[[interfaces]]\nname = "s"\nkind = "simulator"\nmeters = "x"\n', "interfaces[0].meters"),
        ('[[interfaces]]\nname = "s"\nkind = ["tcp"]\n', "interfaces[0].kind"),
        (
            '[[interfaces]]\nname = "s"\nkind = "simulated_receiver"\nprotocol = ["im871a"]\n',
            "interfaces[0].protocol",
        ),
    ],
)
def test_startup_values_of_the_wrong_type_name_their_key(
    tmp_path: Path, text: str, key: str
) -> None:
    file = tmp_path / "mbusgw.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_startup(file)
    assert key in caught.value.errors, caught.value.errors


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("[web]\nprot = 8081\n", "web.prot", "did you mean 'port'?"),
        ('[web]\nhots = "0.0.0.0"\n', "web.hots", "did you mean 'host'?"),
        ('data_dri = "x"\n', "data_dri", "did you mean 'data_dir'?"),
        (
            '[[interfaces]]\nname = "s"\nkind = "simulator"\nmetres = 3\n',
            "interfaces[0].metres",
            "did you mean 'meters'?",
        ),
        ("[web]\ncolour = 1\n", "web.colour", "known: host, port"),
    ],
)
def test_unknown_startup_keys_are_refused_with_the_close_match(
    tmp_path: Path, text: str, key: str, hint: str
) -> None:
    file = tmp_path / "mbusgw.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_startup(file)
    assert hint in caught.value.errors[key], caught.value.errors


@pytest.mark.parametrize("text", ["web = 5\n", "interfaces = 5\n", "data_dir = 5\n"])
def test_run_reports_a_bad_startup_file_without_a_traceback(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mbusgw.gateway.cli import main

    monkeypatch.chdir(tmp_path)  # the default data directory, var, would be made here
    file = tmp_path / "mbusgw.toml"
    file.write_text(text)
    assert main(["run", "--config", str(file)]) == 2
    out = capsys.readouterr()
    assert text.split(" ")[0] in out.out + out.err and "Traceback" not in out.out + out.err
    assert not (tmp_path / "var").exists()
