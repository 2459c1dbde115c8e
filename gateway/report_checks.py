"""Checks of report settings, one function per kind of field: ``check_x(value) -> problem``.

They return ``None`` when the value is good and a sentence saying what is wrong otherwise, as
``gateway/settings.py`` expects of a field's ``check``. Plain functions without gateway imports.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from mbusgw.gateway.report_catalog import EVENT_KINDS, template_problem

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_EMAIL = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+")
_PERIOD = re.compile(r"([1-9][0-9]{0,5})\s*(min|m|h|d|w)")
PERIOD_UNITS = {"min": 60, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
MAX_PERIOD_S = 366 * 86_400


def check_template(value: int) -> str | None:
    return template_problem(value)


def check_host(value: str) -> str | None:
    """A host name or IP address ("" = not set)."""
    if not value:
        return None
    try:
        ipaddress.ip_address(value.strip("[]"))
        return None
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return f"{value!r} is not a host name or IP address (no scheme, no port, no path)"
    return None


def split_addresses(value: str) -> list[str]:
    """E-mail addresses separated by commas, semicolons or spaces."""
    return [part for part in re.split(r"[,;\s]+", value) if part]


def check_addresses(value: str) -> str | None:
    bad = [address for address in split_addresses(value) if not _EMAIL.fullmatch(address)]
    if bad:
        return f"not an e-mail address: {', '.join(bad)}"
    return None


def check_address(value: str) -> str | None:
    if value and not _EMAIL.fullmatch(value):
        return f"{value!r} is not an e-mail address"
    return None


def check_http_uri(value: str) -> str | None:
    """An http:// or https:// address with a host and no user name or password in it."""
    if not value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        return f"{value!r} is not a valid URI: {error}"
    if parts.scheme not in ("http", "https"):
        return f"{value!r} must start with http:// or https://"
    if parts.username is not None or parts.password is not None:
        return "put the user name and password in their own settings, not in the URI"
    if not parts.hostname or check_host(parts.hostname):
        return f"{value!r} has no valid host"
    if port == 0:
        return f"{value!r} has port 0"
    if any(c.isspace() for c in value):
        return f"{value!r} contains white space"
    return None


def check_directory(value: str) -> str | None:
    if any(c in value for c in "\r\n\0"):
        return "a directory cannot contain line breaks or NUL"
    return None


def parse_period(value: str) -> int | None:
    """A value period in seconds; ``None`` for "auto". Raises ``ValueError`` when malformed."""
    text = value.strip().lower()
    if text == "auto":
        return None
    match = _PERIOD.fullmatch(text)
    if not match:
        raise ValueError(f"{value!r} is not 'auto' or a duration like 90min, 6h, 2d or 1w")
    seconds = int(match[1]) * PERIOD_UNITS[match[2]]
    if seconds > MAX_PERIOD_S:
        raise ValueError(f"{value!r} is longer than a year")
    return seconds


def check_period(value: str) -> str | None:
    try:
        parse_period(value)
    except ValueError as error:
        return str(error)
    return None


def split_events(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def check_events(value: str) -> str | None:
    unknown = [name for name in split_events(value) if name not in EVENT_KINDS]
    if unknown:
        return f"unknown event {', '.join(unknown)}; there are {', '.join(EVENT_KINDS)}"
    return None


def check_certificates(value: str) -> str | None:
    """PEM certificates (the report trust store); "" = none of our own."""
    if not value.strip():
        return None
    from cryptography import x509  # loaded on use, not with the settings (the CLI's --help)

    try:
        found = x509.load_pem_x509_certificates(value.encode())
    except ValueError as error:
        return f"not PEM certificates: {error}"
    if not found:
        return "no certificate found in the PEM text"
    return None
