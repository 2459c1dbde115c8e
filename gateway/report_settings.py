"""Settings of the push reports (SPEC §4): receivers (e-mail, FTP, HTTP), timeouts, and each
report's configuration; part of ``gateway.settings.Settings`` as ``reports``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mbusgw.gateway import report_checks
from mbusgw.gateway.report_catalog import REPORT_KINDS, VALUE_INTERVALS, layout_of, protocol_of
from mbusgw.gateway.settings_fields import _bounded, _checked, _choice, _secret


@dataclass(frozen=True)
class EmailReceiver:
    """An SMTP server and the addresses that get the reports (manual 6.8.1)."""

    host: str = _checked("", report_checks.check_host)
    port: int = _bounded(0, 0, 65535, note="0 = 25, 587 with STARTTLS, 465 with TLS")
    security: str = _choice("starttls", "none", "starttls", "tls")
    username: str = _bounded("", max_length=256)
    password: str = _secret()
    sender: str = _checked("", report_checks.check_address, note="'' = the user name")
    recipients: str = _checked("", report_checks.check_addresses, note="comma-separated")

    def cross_check(self) -> dict[str, str]:
        return _credentials_check(self.username, self.password)


@dataclass(frozen=True)
class FtpReceiver:
    """An FTP server and the directory the report files go to (manual 6.8.2, 6.24.4)."""

    host: str = _checked("", report_checks.check_host)
    port: int = _bounded(0, 0, 65535, note="0 = 21, 990 with implicit TLS")
    security: str = _choice("none", "none", "explicit", "implicit")
    username: str = _bounded("", max_length=256, note="'' = anonymous")
    password: str = _secret()
    directory: str = _checked("", report_checks.check_directory, max_length=256)
    passive: bool = True

    def cross_check(self) -> dict[str, str]:
        if self.username == "anonymous":
            return {}
        return _credentials_check(self.username, self.password)


@dataclass(frozen=True)
class HttpReceiver:
    """An HTTP(S) address that reports are POSTed to (manual 6.8.3, 6.24.4)."""

    uri: str = _checked("", report_checks.check_http_uri, max_length=2048)
    auth: str = _choice("none", "none", "basic")
    username: str = _bounded("", max_length=256)
    password: str = _secret()

    def cross_check(self) -> dict[str, str]:
        if self.auth == "basic" and not (self.username and self.password):
            return {"auth": "basic authentication needs a user name and a password"}
        return {}


def _credentials_check(username: str, password: str) -> dict[str, str]:
    if username and not password:
        return {"username": "a user name needs a password"}
    return {}


@dataclass(frozen=True)
class ReportTimeouts:
    """Seconds a delivery may take before it is given up (manual 6.32.4); -1 = no limit."""

    email_s: int = _bounded(60, -1, 3600, note="-1 = none")
    ftp_s: int = _bounded(60, -1, 3600, note="-1 = none")
    http_s: int = _bounded(60, -1, 3600, note="-1 = none")

    def cross_check(self) -> dict[str, str]:
        return {
            name: "0 is no timeout: use -1 for none, or a number of seconds"
            for name in ("email_s", "ftp_s", "http_s")
            if getattr(self, name) == 0
        }


@dataclass(frozen=True)
class ReportConfig:
    """One push report (manual 6.9, 6.32, 6.35): what, when, and to whom."""

    enabled: bool = True
    kind: str = _choice("scheduled", *REPORT_KINDS)
    template: int = _checked(1101, report_checks.check_template)
    schedule: str = field(
        default="every_15_minutes",
        metadata={"cron": True, "note": "a predefined name (synchronised with reading) or cron"},
    )
    value_period: str = _checked("auto", report_checks.check_period, note="auto, or e.g. 6h, 2d")
    value_interval: str = _choice("all", *VALUE_INTERVALS)
    events: str = _checked("", report_checks.check_events, note="event reports; '' = all")
    recipients: str = _checked(
        "", report_checks.check_addresses, note="e-mail: instead of the default recipients"
    )
    ftp: FtpReceiver = field(default_factory=FtpReceiver)  # used when its host is set
    http: HttpReceiver = field(default_factory=HttpReceiver)  # used when its URI is set
    retries: int = _bounded(-1, -1, 20, note="without adaptive retries; -1 = the job setting")
    retry_offset_s: int = _bounded(-1, -1, 86_400, note="-1 = the job setting")


REPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


@dataclass(frozen=True)
class ReportSettings:
    """Push reports: default receivers, timeouts, trust store and the reports themselves."""

    adaptive_retries: bool = True
    timeouts: ReportTimeouts = field(default_factory=ReportTimeouts)
    email: EmailReceiver = field(default_factory=EmailReceiver)
    ftp: FtpReceiver = field(default_factory=FtpReceiver)
    http: HttpReceiver = field(default_factory=HttpReceiver)
    trusted_certificates: str = _checked(
        "", report_checks.check_certificates, max_length=2_000_000, note="PEM, for HTTPS/FTPS"
    )
    system_trust: bool = True
    reports: dict[str, ReportConfig] = field(
        default_factory=dict, metadata={"key": REPORT_NAME, "key_note": "a report name"}
    )

    def cross_check(self) -> dict[str, str]:
        """Every enabled report must have a receiver and a template of its kind."""
        errors = {}
        for name, report in self.reports.items():
            if not report.enabled:
                continue
            problem = self.report_problem(report)
            if problem:
                errors[f"reports.{name}"] = problem
        return errors

    def report_problem(self, report: ReportConfig) -> str | None:
        if (report.kind == "event") != (layout_of(report.template).kind == "events"):
            wanted = "an event template (x2xx)" if report.kind == "event" else "a value template"
            return f"a {report.kind} report needs {wanted}, not {report.template}"
        protocol = protocol_of(report.template)
        if protocol == "email":
            if not self.email.host:
                return "an e-mail report needs an SMTP server (reports.email.host)"
            if not (report.recipients or self.email.recipients):
                return "an e-mail report needs recipients (here or in reports.email.recipients)"
        elif protocol == "ftp" and not (report.ftp.host or self.ftp.host):
            return "an FTP report needs a server (its ftp.host or reports.ftp.host)"
        elif protocol == "http" and not (report.http.uri or self.http.uri):
            return "an HTTP report needs an address (its http.uri or reports.http.uri)"
        return None
