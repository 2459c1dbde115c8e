"""The objects of MBUSGW-MIB as one sorted snapshot: OID → value, built from the gateway's data
model (meters, their health, the report status), looked up by GET and walked by GETNEXT/GETBULK.

Values are kept as plain ``(syntax, value)`` pairs; the agent turns only the ones it sends into
SNMP types."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Protocol

from mbusgw.gateway.health import MeterHealth
from mbusgw.gateway.meters import Meter

MIB_NAME = "MBUSGW-MIB"
MIB_PATH = Path(__file__).with_name(f"{MIB_NAME}.txt")

# enterprises.99999: a placeholder arc, to be replaced by a registered enterprise number
ENTERPRISE = (1, 3, 6, 1, 4, 1, 99999)
NOTIFICATIONS = (*ENTERPRISE, 0)
DEVICE = (*ENTERPRISE, 1, 1)
METER_ENTRY = (*ENTERPRISE, 1, 2, 1)
REPORT_ENTRY = (*ENTERPRISE, 1, 3, 1)

DEVICE_NAME, UPTIME, VERSION, INSTALLED, ACTIVE, FAILED, STATUS = range(1, 8)
METER_ID, METER_POSITION, METER_STATUS, METER_LAST_GOOD = range(2, 6)
REPORT_NAME, REPORT_STATUS, REPORT_LAST_SUCCESS = range(2, 5)

STATUS_CHANGED, METER_FAILED, METER_RECOVERED, METER_NOT_SEEN, TEST = (
    (*NOTIFICATIONS, n) for n in range(1, 6)
)

OK, WARNING, ERROR = 1, 2, 3  # mbusgwStatus
METER_CODES = {"ok": 1, "never": 2, "failed": 3}  # mbusgwMeterStatus: ok, notRead, failed

Oid = tuple[int, ...]
Value = tuple[str, object]  # (syntax, value): text | integer | gauge | ticks | oid


class ReportRow(Protocol):
    """A report's line of the report table (``ReportStatus`` is one)."""

    name: str
    last_success: datetime | None

    @property
    def code(self) -> int: ...  # 1 delivered, 2 not sent yet, 3 failed


def package_version() -> str:
    try:
        return version("mbusgw")
    except PackageNotFoundError:
        return "unknown"


def mib_text() -> str:
    return MIB_PATH.read_text(encoding="ascii")


def meter_code(meter: Meter, health: MeterHealth | None) -> int:
    if not meter.active or health is None:
        return METER_CODES["never"]
    return METER_CODES[health.status]


def aggregate_status(meter_codes: Iterable[int], report_codes: Iterable[int]) -> int:
    """ok; warning when some meters or some reports failed; error when every active meter
    failed (the gateway reads nothing)."""
    codes = list(meter_codes)
    failed = codes.count(METER_CODES["failed"])
    if codes and failed == len(codes):
        return ERROR
    if failed or METER_CODES["failed"] in report_codes:
        return WARNING
    return OK


def utc_text(at: datetime | None) -> str:
    if at is None:
        return ""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Snapshot:
    """Every object's value at one moment, in OID order."""

    def __init__(self, rows: dict[Oid, Value]) -> None:
        self.oids: list[Oid] = sorted(rows)
        self.values: list[Value] = [rows[oid] for oid in self.oids]

    def get(self, oid: Oid) -> Value | None:
        at = bisect_left(self.oids, oid)
        if at < len(self.oids) and self.oids[at] == oid:
            return self.values[at]
        return None

    def next(self, oid: Oid) -> tuple[Oid, Value] | None:
        """The first object after ``oid`` (None past the end of the MIB)."""
        at = bisect_right(self.oids, oid)
        if at == len(self.oids):
            return None
        return self.oids[at], self.values[at]


@dataclass
class GatewayView:
    """What the agent reads from the gateway, asked anew at every snapshot."""

    device_name: Callable[[], str]
    version: str
    uptime_s: Callable[[], float]
    meters: Callable[[], Sequence[Meter]]
    health: dict[str, MeterHealth]
    reports: Callable[[], Sequence[ReportRow]]

    def status(self) -> int:
        active = [m for m in self.meters() if m.active]
        return aggregate_status(
            (meter_code(m, self.health.get(m.key)) for m in active),
            (r.code for r in self.reports()),
        )

    def snapshot(self) -> Snapshot:
        meters = list(self.meters())
        reports = list(self.reports())
        codes = [meter_code(m, self.health.get(m.key)) for m in meters]
        active_codes = [code for m, code in zip(meters, codes, strict=True) if m.active]
        rows: dict[Oid, Value] = {
            (*DEVICE, DEVICE_NAME, 0): ("text", self.device_name()),
            (*DEVICE, UPTIME, 0): ("ticks", int(self.uptime_s() * 100)),
            (*DEVICE, VERSION, 0): ("text", self.version),
            (*DEVICE, INSTALLED, 0): ("gauge", len(meters)),
            (*DEVICE, ACTIVE, 0): ("gauge", len(active_codes)),
            (*DEVICE, FAILED, 0): ("gauge", active_codes.count(METER_CODES["failed"])),
            (*DEVICE, STATUS, 0): (
                "integer",
                aggregate_status(active_codes, (r.code for r in reports)),
            ),
        }
        for index, (meter, code) in enumerate(zip(meters, codes, strict=True), start=1):
            health = self.health.get(meter.key)
            last_good = health.last_good if health else None
            rows[(*METER_ENTRY, METER_ID, index)] = ("text", meter.key)
            rows[(*METER_ENTRY, METER_POSITION, index)] = ("text", meter.position)
            rows[(*METER_ENTRY, METER_STATUS, index)] = ("integer", code)
            rows[(*METER_ENTRY, METER_LAST_GOOD, index)] = ("text", utc_text(last_good))
        for index, report in enumerate(reports, start=1):
            rows[(*REPORT_ENTRY, REPORT_NAME, index)] = ("text", report.name)
            rows[(*REPORT_ENTRY, REPORT_STATUS, index)] = ("integer", report.code)
            rows[(*REPORT_ENTRY, REPORT_LAST_SUCCESS, index)] = (
                "text",
                utc_text(report.last_success),
            )
        return Snapshot(rows)
