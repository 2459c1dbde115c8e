"""Typed, validated settings.

Two layers: ``StartupConfig`` is read from a TOML file before anything opens (data directory,
interfaces, ports); ``Settings`` is everything else, kept in the store, edited through the UI and
APIs, exported in the configuration file (but for fields marked ``device_specific``). Validation
reports every bad field with its dotted path, and a rejected change changes nothing.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mbusgw.gateway.autoconfig_settings import AutoconfigSettings
from mbusgw.gateway.cron import CronSchedule, CronSyntaxError
from mbusgw.gateway.dlms_settings import DlmsSettings
from mbusgw.gateway.meters import CAPACITIES
from mbusgw.gateway.metrics_settings import MetricsSettings
from mbusgw.gateway.modbus_encoding import DATA_TYPE_LABELS, WORD_ORDERS, parse_constant
from mbusgw.gateway.mqtt_settings import MqttSettings
from mbusgw.gateway.report_settings import (
    ReportSettings,
)
from mbusgw.gateway.settings_fields import ConfigError, _bounded, _checked, _choice
from mbusgw.gateway.slave_settings import SlaveSettings
from mbusgw.gateway.snmp_settings import SnmpSettings
from mbusgw.gateway.terminal_settings import TerminalSettings
from mbusgw.gateway.time_settings import TimeSettings


@dataclass(frozen=True)
class LineTiming:
    """Table 8 of the manual: timeouts and retries of one kind of exchange."""

    response_timeout_ms: int = _bounded(0, 0, 60_000, note="0 = the EN 13757-2 bound")
    read_retries: int = _bounded(2, 0, 10)
    select_retries: int = _bounded(2, 0, 10)
    wait_after_init_ms: int = _bounded(50, 0, 10_000)
    collision_recovery_ms: int = _bounded(300, 0, 60_000)
    inter_frame_gap_ms: int = _bounded(0, 0, 10_000)


@dataclass(frozen=True)
class MBusSettings:
    timing: LineTiming = field(default_factory=LineTiming)
    multi_telegram_timing: LineTiming = field(default_factory=LineTiming)
    multi_telegram: str = _choice("auto", "off", "auto")
    multi_telegram_limit: int = _bounded(8, 1, 64)
    # who runs the lines' exchanges (from the next start): "threads", an OS thread per line
    # outside the trio clock; "trio", a task per line; "auto", threads for serial ports and
    # TCP converters, trio for the built-in simulated lines (which run on the trio clock)
    driver: str = _choice("auto", "auto", "trio", "threads")


@dataclass(frozen=True)
class ReadingSettings:
    enabled: bool = True
    schedule: str = field(default="every_15_minutes", metadata={"cron": True})
    continuous: bool = False
    read_at_start: bool = True  # one reading right after start-up, so values are fresh at once
    not_seen_after_min: int = _bounded(1440, 0, 525_600, note="0 = no 'meter not seen' event")


@dataclass(frozen=True)
class JobRetrySettings:
    max_retries: int = _bounded(2, 0, 20)
    retry_offset_s: int = _bounded(60, 0, 86_400)


@dataclass(frozen=True)
class IdentitySettings:
    device_name: str = _bounded("mbusgw", max_length=64)
    contact: str = _bounded("", max_length=256)


@dataclass(frozen=True)
class ConventionSettings:
    language: str = _choice("en", "en", "sv", "de")
    decimal_separator: str = _choice(".", ".", ",")
    first_day_of_week: str = _choice("monday", "monday", "sunday")


@dataclass(frozen=True)
class LogSettings:
    min_level: int = _bounded(0, -1, 2, note="-1 keeps debug messages too")
    status_byte: str = _choice("on_change", "always", "never", "on_change", "on_error")


@dataclass(frozen=True)
class ModbusSeriesSettings:
    """Overrides for one series of one meter ("" = the meter's or the service's default)."""

    data_type: str = _choice("", "", *DATA_TYPE_LABELS)
    constant: str = field(default="", metadata={"constant": "optional"})


SERIES_KEY = re.compile(r"(?:[0-9A-Fa-f]{2}){1,12}")


@dataclass(frozen=True)
class ModbusMeterSettings:
    """Per meter: served or not, its own unit id (0 = none), and type/constant overrides."""

    enabled: bool = True
    unit_id: int = _bounded(0, 0, 247, note="0 = reachable only through the gateway's unit id")
    data_type: str = _choice("", "", *DATA_TYPE_LABELS)
    constant: str = field(default="", metadata={"constant": "optional"})
    series: dict[str, ModbusSeriesSettings] = field(
        default_factory=dict, metadata={"key": SERIES_KEY, "key_note": "the DIF/VIF bytes in hex"}
    )


@dataclass(frozen=True)
class StoreSettings:
    """Caps and ages of the store (docs/store.md); ``max_bytes`` depends on the device's disk."""

    log_max_bytes: int = _bounded(100_000_000, 65_536, 10 * 2**30, note="system log size cap")
    log_max_days: int = _bounded(31, 1, 3660, note="system log age cap")
    raw_days: int = _bounded(92, 0, 36_600, note="raw telegrams; 0 = until space runs out")
    value_days: int = _bounded(0, 0, 36_600, note="values; 0 = until space runs out")
    compact_after_hours: int = _bounded(1, 0, 168, note="grace after a UTC day before compaction")
    # 32-bit processes map ~1.1 GiB at most (py-lmdb): one environment stays below that
    max_bytes: int = _bounded(
        4 * 2**30 if sys.maxsize > 2**32 else 2**30, 2**20, 2**44, device_specific=True
    )


RTU_BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400)  # rates the serial ports also run M-Bus at


def _rtu_baud_rate(value: int) -> str | None:
    if value not in RTU_BAUD_RATES:
        return f"must be one of {', '.join(map(str, RTU_BAUD_RATES))}"
    return None


def _serial_device(value: str) -> str | None:
    if value and not value.startswith("/dev/"):
        return "must be a serial device such as /dev/ttyUSB1, or empty"
    return None


@dataclass(frozen=True)
class ModbusSettings:
    """The Modbus TCP server (manual 6.29); see docs/modbus.md for the register map."""

    enabled: bool = True
    host: str = field(default="0.0.0.0", metadata={"ip": True})
    port: int = _bounded(1502, 0, 65535, note="502 is the standard port; 0 = any free port")
    unit_id: int = _bounded(1, 1, 247, note="the gateway's own unit id (0 and 255 also answer)")
    max_connections: int = _bounded(10, 1, 256)
    idle_timeout_s: int = _bounded(120, 0, 86_400, note="0 = keep idle connections open")
    data_type: str = _choice("float32", *DATA_TYPE_LABELS)
    constant: str = field(default="1", metadata={"constant": "required"})
    invalid_addresses: str = _choice("exception", "exception", "zero_fill")
    word_order: str = _choice("big", *WORD_ORDERS)
    meters: dict[str, ModbusMeterSettings] = field(
        default_factory=dict, metadata={"key": re.compile(r"\S{1,64}"), "key_note": "a meter key"}
    )
    # Modbus RTU on a serial slave port (8E1), the same map; "" = no RTU
    rtu_device: str = _checked("", _serial_device, max_length=256)
    rtu_baud_rate: int = _checked(19200, _rtu_baud_rate, min=1200, max=38400)

    def cross_check(self) -> dict[str, str]:
        """Unit ids must be unique and must not be one the gateway answers itself."""
        errors = {}
        taken = {0: "gateway", 255: "gateway", self.unit_id: "gateway"}
        for key, meter in self.meters.items():
            if not meter.unit_id:
                continue
            other = taken.get(meter.unit_id)
            if other is not None:
                owner = "the gateway" if other == "gateway" else f"meter {other}"
                errors[f"meters.{key}.unit_id"] = f"unit id {meter.unit_id} is taken by {owner}"
            else:
                taken[meter.unit_id] = key
        return errors


@dataclass(frozen=True)
class Settings:
    capacity: int = field(default=512, metadata={"choices": CAPACITIES})
    timezone: str = field(default="UTC", metadata={"timezone": True})
    reading: ReadingSettings = field(default_factory=ReadingSettings)
    mbus: MBusSettings = field(default_factory=MBusSettings)
    jobs: JobRetrySettings = field(default_factory=JobRetrySettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    conventions: ConventionSettings = field(default_factory=ConventionSettings)
    log: LogSettings = field(default_factory=LogSettings)
    modbus: ModbusSettings = field(default_factory=ModbusSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    reports: ReportSettings = field(default_factory=ReportSettings)
    terminal: TerminalSettings = field(default_factory=TerminalSettings)
    autoconfig: AutoconfigSettings = field(default_factory=AutoconfigSettings)
    time: TimeSettings = field(default_factory=TimeSettings)
    slave: SlaveSettings = field(default_factory=SlaveSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    snmp: SnmpSettings = field(default_factory=SnmpSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    dlms: DlmsSettings = field(default_factory=DlmsSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, changes: dict[str, Any]) -> Settings:
        """A copy with ``changes`` (a nested dict of only what changes) applied and validated."""
        merged = _deep_merge(self.to_dict(), changes)
        return settings_from_dict(merged)

    def changed_sections(self, other: Settings) -> set[str]:
        """Top-level sections that differ (to restart only the services they touch)."""
        return {f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)}


SECRET_MASK = "********"


def masked_secret(secret: str) -> str:
    """What is shown of a password: ``SECRET_MASK`` when one is set, "" when none is."""
    return SECRET_MASK if secret else ""


def masked(value: Any) -> Any:
    """Settings as plain data for an API: a set password shows as ``SECRET_MASK``, an unset
    one as ""; the secret itself never leaves."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: (
                masked_secret(getattr(value, f.name))
                if f.metadata.get("secret")
                else masked(getattr(value, f.name))
            )
            for f in fields(value)
        }
    if isinstance(value, dict):
        return {key: masked(entry) for key, entry in value.items()}
    if isinstance(value, list | tuple):
        return [masked(entry) for entry in value]
    return value


def without_masks(changes: Any, cls: type | None = None) -> Any:
    """A change (nested, from ``cls``, default ``Settings``, down) as a client sends it back
    after reading ``masked`` settings: a password given as the mask means "keep the stored
    one", so it is left out of the change. Only password fields are looked at."""
    cls = cls or Settings
    if not isinstance(changes, dict):
        return changes
    known = {f.name: f for f in fields(cls)}
    hints = get_type_hints(cls)
    kept = {}
    for name, value in changes.items():
        f = known.get(name)
        if f is None:  # an unknown setting: the settings check names it
            kept[name] = value
        elif f.metadata.get("secret"):
            if value != SECRET_MASK:
                kept[name] = value
        elif is_dataclass(hints[name]):
            kept[name] = without_masks(value, hints[name])
        elif get_origin(hints[name]) is dict and isinstance(value, dict):
            entry = get_args(hints[name])[1]  # the tables hold settings dataclasses
            kept[name] = {key: without_masks(item, entry) for key, item in value.items()}
        else:
            kept[name] = value
    return kept


def settings_from_dict(data: dict[str, Any]) -> Settings:
    errors: dict[str, str] = {}
    result = _build(Settings, data, "", errors)
    if errors:
        raise ConfigError(errors)
    return result


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _build(cls: type, data: Any, prefix: str, errors: dict[str, str]) -> Any:
    if not isinstance(data, dict):
        errors[prefix.rstrip(".") or "settings"] = "must be a table of settings"
        return cls()
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            errors[f"{prefix}{key}"] = "unknown setting"
    values = {}
    for f in fields(cls):
        path = f"{prefix}{f.name}"
        if f.name not in data:
            continue
        kind = hints[f.name]
        value = data[f.name]
        if is_dataclass(kind):
            values[f.name] = _build(kind, value, path + ".", errors)
            continue
        if get_origin(kind) is dict:
            values[f.name] = _build_mapping(get_args(kind)[1], value, path, f.metadata, errors)
            continue
        message = _check(kind, value, f.metadata)
        if message:
            errors[path] = message
        else:
            values[f.name] = value
    result = replace(cls(), **values)
    cross_check = getattr(result, "cross_check", None)
    if cross_check is not None and not any(path.startswith(prefix) for path in errors):
        errors.update({f"{prefix}{path}": message for path, message in cross_check().items()})
    return result


def _build_mapping(cls: type, data: Any, path: str, meta: Any, errors: dict[str, str]) -> dict:
    """A table of named entries of one kind (per-meter settings, per-series overrides,
    reports). An entry given as None is removed (a change ``{"reports": {"reports": {"r":
    None}}}`` deletes report r, as in a JSON merge patch)."""
    if not isinstance(data, dict):
        errors[path] = "must be a table of settings"
        return {}
    result = {}
    for key, value in data.items():
        if value is None:
            continue
        if not isinstance(key, str) or not meta["key"].fullmatch(key):
            errors[f"{path}.{key}"] = f"not {meta['key_note']}"
            continue
        result[key] = _build(cls, value, f"{path}.{key}.", errors)
    return result


def _check(kind: Any, value: Any, meta: Any) -> str | None:
    if get_origin(kind) is not None:
        kind = get_args(kind)[0]
    if kind is bool:
        if not isinstance(value, bool):
            return "must be true or false"
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a whole number"
        low, high = meta.get("min"), meta.get("max")
        if low is not None and value < low or high is not None and value > high:
            return f"must be between {low} and {high}"
    elif kind is str:
        if not isinstance(value, str):
            return "must be text"
        if "max_length" in meta and len(value) > meta["max_length"]:
            return f"must be at most {meta['max_length']} characters"
    choices = meta.get("choices")
    if choices and value not in choices:
        return f"must be one of {', '.join(str(c) for c in choices)}"
    check = meta.get("check")
    if check is not None:
        problem = check(value)
        if problem:
            return problem
    if meta.get("cron"):
        try:
            CronSchedule(value)
        except CronSyntaxError as exc:
            return str(exc)
    if meta.get("constant") and not (value == "" and meta["constant"] == "optional"):
        try:
            parse_constant(value)
        except ValueError as exc:
            return str(exc)
    if meta.get("ip"):
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return f"{value!r} is not an IP address"
    if meta.get("timezone"):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            return f"{value!r} is not a known time zone"
    return None


# ---------------------------------------------------------------- start-up file


@dataclass(frozen=True)
class InterfaceConfig:
    """One interface: an M-Bus line (a serial port, an M-Bus/TCP converter, a built-in
    simulated line) or a wireless M-Bus receiver (an iM871A or AMB8465 stick on a serial
    device, hex lines over TCP, or a built-in simulated receiver)."""

    name: str
    kind: str  # serial | tcp | simulator | im871a | amb8465 | hex_tcp | simulated_receiver
    device: str | None = None  # serial, im871a, amb8465
    host: str | None = None  # tcp, hex_tcp
    port: int | None = None  # tcp, hex_tcp
    baud: int = 2400  # receivers: 57600 (iM871A) or 9600 (AMB8465) unless given
    meters: int = 8  # simulator: meters on the line; simulated_receiver: wireless meters
    link_mode: str = "T1+C1"  # receivers: S1, T1, C1 or T1+C1
    protocol: str = "im871a"  # simulated_receiver: the stick it behaves as
    interval: float = 30.0  # simulated_receiver: seconds between a meter's telegrams

    @property
    def wireless(self) -> bool:
        return self.kind in RECEIVER_KINDS


@dataclass(frozen=True)
class StartupConfig:
    data_dir: Path = Path("var")
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    interfaces: tuple[InterfaceConfig, ...] = ()


# With no interface configured, the gateway runs on two simulated lines of a realistic mix and
# two simulated wireless receivers (an iM871A and an AMB8465) hearing four wireless meters,
# two of them encrypted, and a neighbour's meter.
EMBEDDED_DEFAULT = (
    InterfaceConfig(name="sim1", kind="simulator", baud=2400, meters=8),
    InterfaceConfig(name="sim2", kind="simulator", baud=2400, meters=8),
    InterfaceConfig(name="wmbus1", kind="simulated_receiver", protocol="im871a", meters=4),
    InterfaceConfig(name="wmbus2", kind="simulated_receiver", protocol="amb8465", meters=4),
)
LINE_KINDS = ("serial", "tcp", "simulator")
RECEIVER_KINDS = ("im871a", "amb8465", "hex_tcp", "simulated_receiver")
INTERFACE_KINDS = LINE_KINDS + RECEIVER_KINDS
RECEIVER_BAUDS = {"im871a": 57600, "amb8465": 9600}
# The baud rates M-Bus meters use (EN 13757-2 allows 300 to 38400).
MBUS_BAUD_RATES = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400)
SERIAL_BAUDS = (300, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
RECEIVER_ONLY = ("link_mode", "protocol", "interval")
LINK_MODES = ("S1", "T1", "C1", "T1+C1")


STARTUP_KEYS = ("data_dir", "web", "interfaces")
WEB_KEYS = ("host", "port")


def load_startup(path: Path | None, *, data_dir: Path | None = None) -> StartupConfig:
    """Read the start-up file (all of it optional); ``data_dir`` from the command line wins.

    Every fault is reported against its key (``web.port``, ``interfaces[1].kind``), an unknown
    key with the known one it is probably a typo of.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError({str(path): f"cannot read: {exc.strerror or exc}"}) from None
        except UnicodeDecodeError:
            raise ConfigError({str(path): "not UTF-8 text"}) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError({str(path): f"not valid TOML: {exc}"}) from None
    errors: dict[str, str] = {}
    _unknown_keys(raw, STARTUP_KEYS, "", errors)
    directory = raw.get("data_dir", "var")
    if not isinstance(directory, str) or not directory.strip():
        errors["data_dir"] = "must be the path of a directory, as text"
    web = raw.get("web", {})
    if not isinstance(web, dict):
        errors["web"] = "must be a table ([web] with host and port)"
        web = {}
    _unknown_keys(web, WEB_KEYS, "web.", errors)
    host = web.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host.strip():
        errors["web.host"] = "must be a host name or an IP address, as text"
    port = web.get("port", 8080)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        errors["web.port"] = "must be a port number 0-65535"
    items = raw.get("interfaces", [])
    if not isinstance(items, list):
        errors["interfaces"] = "must be a list of tables ([[interfaces]] sections)"
        items = []
    interfaces = []
    for index, item in enumerate(items):
        interface = _interface(item, f"interfaces[{index}]", errors)
        if interface:
            interfaces.append(interface)
    names = [i.name for i in interfaces]
    for name in {n for n in names if names.count(n) > 1}:
        errors[f"interfaces.{name}"] = "two interfaces have this name"
    if errors:
        raise ConfigError(errors)
    return StartupConfig(
        data_dir=data_dir or Path(directory),
        web_host=host,
        web_port=port,
        interfaces=tuple(interfaces),
    )


def _unknown_keys(
    table: dict[str, Any], known: Sequence[str], prefix: str, errors: dict[str, str]
) -> None:
    """Name each key of ``table`` that is not one of ``known``, with its likely intent."""
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
        errors[f"{prefix}{key}"] = "unknown setting" + hint


def _interface(item: Any, path: str, errors: dict[str, str]) -> InterfaceConfig | None:
    if not isinstance(item, dict):
        errors[path] = "must be a table"
        return None
    known = [f.name for f in fields(InterfaceConfig)]
    unknown = set(item) - set(known)
    _unknown_keys(item, known, f"{path}.", errors)
    name, kind = item.get("name"), item.get("kind")
    if not isinstance(name, str) or not name:
        errors[f"{path}.name"] = "required, as text"
    if kind not in INTERFACE_KINDS:
        errors[f"{path}.kind"] = f"must be one of {', '.join(INTERFACE_KINDS)}"
    if kind in ("serial", "im871a", "amb8465") and not isinstance(item.get("device"), str):
        errors[f"{path}.device"] = f"required for a {kind} interface (e.g. /dev/ttyUSB0)"
    if kind in ("tcp", "hex_tcp") and not (
        isinstance(item.get("host"), str) and _is_port(item.get("port"))
    ):
        errors[f"{path}.host"] = f"host and port (1-65535) are required for a {kind} interface"
    if kind in RECEIVER_KINDS:
        _check_receiver(item, kind, path, errors)
    else:
        for key in set(RECEIVER_ONLY) & set(item):
            errors[f"{path}.{key}"] = "only for wireless M-Bus receivers"
        if item.get("baud", 2400) not in (300, 2400, 9600, 19200, 38400):
            errors[f"{path}.baud"] = "must be 300, 2400 or 9600 (19200/38400 for fast converters)"
        meters = item.get("meters", 8)
        if isinstance(meters, bool) or not isinstance(meters, int) or not 0 <= meters <= 1000:
            errors[f"{path}.meters"] = "must be a whole number 0-1000"
    if unknown or f"{path}.name" in errors or f"{path}.kind" in errors:
        return None
    defaults = {f.name: f.default for f in fields(InterfaceConfig) if f.default is not MISSING}
    if kind in RECEIVER_BAUDS:
        defaults["baud"] = RECEIVER_BAUDS[kind]
    elif kind == "simulated_receiver":
        defaults["meters"] = 4
    values = {**defaults, **item}
    if isinstance(values.get("link_mode"), str):
        values["link_mode"] = values["link_mode"].upper().replace("C1+T1", "T1+C1")
    return InterfaceConfig(**values)


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 65535


def _check_receiver(item: dict[str, Any], kind: str, path: str, errors: dict[str, str]) -> None:
    link_mode = item.get("link_mode", "T1+C1")
    if (
        not isinstance(link_mode, str)
        or link_mode.upper().replace("C1+T1", "T1+C1") not in LINK_MODES
    ):
        errors[f"{path}.link_mode"] = f"must be one of {', '.join(LINK_MODES)}"
    if "baud" in item and (kind not in RECEIVER_BAUDS or item["baud"] not in SERIAL_BAUDS):
        errors[f"{path}.baud"] = (
            f"one of {', '.join(map(str, SERIAL_BAUDS))}"
            if kind in RECEIVER_BAUDS
            else f"a {kind} interface has no baud rate"
        )
    if kind != "simulated_receiver":
        for key in ("protocol", "interval", "meters"):
            if key in item:
                errors[f"{path}.{key}"] = "only for a simulated_receiver"
        return
    if item.get("protocol", "im871a") not in tuple(RECEIVER_BAUDS):
        errors[f"{path}.protocol"] = f"must be one of {', '.join(RECEIVER_BAUDS)}"
    interval = item.get("interval", 30.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        errors[f"{path}.interval"] = "must be a number of seconds"
    elif not 0.05 <= interval <= 3600:
        errors[f"{path}.interval"] = "must be between 0.05 and 3600 seconds"
    meters = item.get("meters", 4)
    if isinstance(meters, bool) or not isinstance(meters, int) or not 1 <= meters <= 64:
        errors[f"{path}.meters"] = "must be a whole number 1-64"
