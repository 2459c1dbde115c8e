"""What the API (and later the SNMP report status table) shows about each report, and what one
attempt did."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

OK, NEVER, FAILED = 1, 2, 3  # the status codes of the SNMP report table


@dataclass(frozen=True)
class Outcome:
    """What one attempt did."""

    ok: bool
    values: int
    reply: str = ""
    error: str = ""


@dataclass
class ReportStatus:
    name: str
    kind: str = "scheduled"
    template: int = 0
    protocol: str = ""
    enabled: bool = True
    target: str = ""  # where it goes (no secrets)
    state: str = "idle"  # idle | waiting_for_reading | sending | retrying | disabled
    next_run: dt.datetime | None = None
    last_attempt: dt.datetime | None = None
    last_success: dt.datetime | None = None
    last_error: str | None = None
    last_reply: str | None = None  # the receiver's acceptance, e.g. "250 accepted …"
    values_pending: int = 0  # values the last attempt could not deliver (they go with the next)
    values_delivered: int = 0  # values in the last delivered report
    delivered_until: dt.datetime | None = None
    attempts: int = 0
    failures: int = 0

    @property
    def code(self) -> int:
        """1: the last report was delivered; 3: it failed; 2: none was sent yet."""
        if self.last_attempt is None:
            return NEVER
        return FAILED if self.last_error else OK

    def as_dict(self) -> dict[str, Any]:
        def when(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "name": self.name,
            "kind": self.kind,
            "template": self.template,
            "protocol": self.protocol,
            "enabled": self.enabled,
            "target": self.target,
            "state": self.state,
            "status": self.code,
            "next_run": when(self.next_run),
            "last_attempt": when(self.last_attempt),
            "last_success": when(self.last_success),
            "last_error": self.last_error,
            "last_reply": self.last_reply,
            "values_pending": self.values_pending,
            "values_delivered": self.values_delivered,
            "delivered_until": when(self.delivered_until),
            "attempts": self.attempts,
            "failures": self.failures,
        }
