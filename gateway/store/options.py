"""Settings: the registry of known names with defaults and checks, and their stored values.

Every setting has a name (dotted: ``syslog.min_level``), a default, a check that returns the
normalised value or raises ``ConfigError``, and whether it is device-specific (kept out of
configuration files, as the IP address is). Other parts of the gateway add theirs with
``register_setting``. Values are stored as JSON in the ``settings`` table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import lmdb

from mbusgw.gateway.errors import ConfigError
from mbusgw.gateway.store.env import GiB, MiB
from mbusgw.gateway.store.keys import text_key
from mbusgw.gateway.store.model import StatusByteMode

Check = Callable[[object], object]


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: object
    check: Check
    doc: str
    device_specific: bool = False


SETTINGS: dict[str, Setting] = {}


def register_setting(setting: Setting) -> None:
    if setting.name in SETTINGS:
        raise ValueError(f"setting {setting.name} registered twice")
    setting.check(setting.default)
    SETTINGS[setting.name] = setting


def integer(low: int, high: int) -> Check:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise ConfigError(f"{value} is outside {low}..{high}")
        return value

    return check


def choice(*allowed: str) -> Check:
    def check(value: object) -> str:
        if value not in allowed:
            raise ConfigError(f"{value!r} is not one of {', '.join(allowed)}")
        return str(value)

    return check


def validate_settings(changes: Mapping[str, object]) -> dict[str, object]:
    """All changes checked before any is applied; the first problem raises ``ConfigError``."""
    checked = {}
    for name, value in changes.items():
        setting = SETTINGS.get(name)
        if setting is None:
            raise ConfigError("unknown setting", name)
        try:
            checked[name] = setting.check(value)
        except ConfigError as error:
            raise ConfigError(error.message, name) from None
    return checked


def read_settings(txn: lmdb.Transaction, db: lmdb._Database) -> dict[str, object]:
    """Stored values over the defaults; stored names no longer registered are kept as they are."""
    values = {name: setting.default for name, setting in SETTINGS.items()}
    for key, raw in txn.cursor(db=db):
        values[key.decode()] = json.loads(raw)
    return values


def write_settings(
    txn: lmdb.Transaction, db: lmdb._Database, changes: Mapping[str, object]
) -> None:
    """Store checked values (``validate_settings`` first: this writes them all)."""
    for name, value in changes.items():
        txn.put(text_key(name), json.dumps(value).encode(), db=db)


SYSLOG_MIN_LEVEL = "syslog.min_level"
SYSLOG_MAX_BYTES = "syslog.max_bytes"
SYSLOG_MAX_DAYS = "syslog.max_days"
STATUS_BYTE_MODE = "meterlog.status_byte"
RAW_DAYS = "retention.raw_days"
VALUE_DAYS = "retention.value_days"
COMPACT_AFTER_HOURS = "store.compact_after_hours"
MAX_STORE_BYTES = "store.max_bytes"

for _setting in (
    Setting(SYSLOG_MIN_LEVEL, 0, integer(-1, 3), "lowest level stored (-1 also keeps debug)"),
    Setting(SYSLOG_MAX_BYTES, 100_000_000, integer(64 * 1024, 10 * GiB), "system log size cap"),
    Setting(SYSLOG_MAX_DAYS, 31, integer(1, 3660), "system log age cap in days"),
    Setting(
        STATUS_BYTE_MODE,
        StatusByteMode.ON_CHANGE.value,
        choice(*(mode.value for mode in StatusByteMode)),
        "when the M-Bus status byte goes into the meter log",
    ),
    Setting(
        RAW_DAYS, 92, integer(0, 36_600), "days raw telegrams are kept (0: until space runs out)"
    ),
    Setting(VALUE_DAYS, 0, integer(0, 36_600), "days values are kept (0: until space runs out)"),
    Setting(
        COMPACT_AFTER_HOURS, 1, integer(0, 168), "hours after a UTC day ends before compaction"
    ),
    Setting(
        MAX_STORE_BYTES,
        # 32-bit processes map ~1.1 GiB at most (py-lmdb docs): one environment stays below it
        4 * GiB if sys.maxsize > 2**32 else 1 * GiB,
        integer(1 * MiB, 1 << 44),
        "size the store may grow to before the oldest data is pruned",
        device_specific=True,
    ),
):
    register_setting(_setting)
