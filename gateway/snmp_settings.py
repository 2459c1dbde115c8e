"""Settings of the SNMP v2c agent and its notification receivers; part of ``Settings`` as
``snmp``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mbusgw.gateway import report_checks
from mbusgw.gateway.settings_fields import _bounded, _checked

RECEIVER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _community(default: str) -> object:
    """A community string: a shared secret of v2c, so shown only as set or not."""
    return field(default=default, metadata={"max_length": 64, "secret": True})


@dataclass(frozen=True)
class SnmpReceiver:
    """A manager that gets the notifications (snmptrapd, an NMS)."""

    host: str = _checked("", report_checks.check_host)
    port: int = _bounded(162, 1, 65535)
    community: str = _community("public")
    inform: bool = False  # INFORM: acknowledged, sent again until it is
    retries: int = _bounded(2, 0, 10, note="INFORM: how often it is sent again")
    timeout_s: int = _bounded(3, 1, 60, note="INFORM: how long an acknowledgement is awaited")


@dataclass(frozen=True)
class SnmpSettings:
    enabled: bool = False
    host: str = field(default="0.0.0.0", metadata={"ip": True})
    port: int = _bounded(161, 0, 65535, note="161 is the standard port; 0 = any free port")
    community: str = _community("public")
    traps_on_status: bool = True  # a notification on every change of the aggregate status
    traps_on_meters: bool = True  # on a meter failed, recovered, not seen
    receivers: dict[str, SnmpReceiver] = field(
        default_factory=dict,
        metadata={"key": RECEIVER_NAME, "key_note": "a receiver's name"},
    )

    def cross_check(self) -> dict[str, str]:
        return {
            f"receivers.{name}.host": "a receiver needs a host"
            for name, receiver in self.receivers.items()
            if not receiver.host
        }
