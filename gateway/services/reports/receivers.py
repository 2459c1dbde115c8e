"""Choosing a report's receiver: the report's own or the protocol's default, with its timeout
and the trust store for TLS."""

from __future__ import annotations

import functools
import ssl

from mbusgw.gateway.errors import DeliveryError
from mbusgw.gateway.report_catalog import protocol_of
from mbusgw.gateway.report_checks import split_addresses
from mbusgw.gateway.report_settings import ReportConfig, ReportSettings
from mbusgw.gateway.services.reports.delivery import Delivery, timeout_of
from mbusgw.gateway.services.reports.ftp import FtpDelivery
from mbusgw.gateway.services.reports.http import HttpDelivery
from mbusgw.gateway.services.reports.smtp import SmtpDelivery
from mbusgw.gateway.services.reports.tls import client_context


@functools.lru_cache(maxsize=4)
def _context(certificates: str, system_trust: bool) -> ssl.SSLContext:
    try:
        return client_context(certificates, system_trust=system_trust)
    except (OSError, ValueError) as error:
        raise DeliveryError(f"the report trust store cannot be used: {error}") from None


def delivery_for(report: ReportConfig, settings: ReportSettings) -> Delivery:
    """The delivery of ``report``: its protocol from the template, its receiver, its timeout."""

    def context() -> ssl.SSLContext:
        return _context(settings.trusted_certificates, settings.system_trust)

    protocol = protocol_of(report.template)
    if protocol == "email":
        recipients = split_addresses(report.recipients or settings.email.recipients)
        return SmtpDelivery(
            settings.email, recipients, timeout_of(settings.timeouts.email_s), context
        )
    if protocol == "ftp":
        receiver = report.ftp if report.ftp.host else settings.ftp
        return FtpDelivery(receiver, timeout_of(settings.timeouts.ftp_s), context)
    receiver = report.http if report.http.uri else settings.http
    return HttpDelivery(receiver, timeout_of(settings.timeouts.http_s), context)
