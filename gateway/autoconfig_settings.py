"""Settings of autoconfiguration (manual 6.31; docs/autoconfig.md): where and when to fetch a
file of terminal commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mbusgw.gateway.settings_fields import _bounded, _checked, _choice, _secret


def _check_url(value: object) -> str | None:
    if not isinstance(value, str):
        return "must be text"
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    if parts.username or parts.password:
        return "put the user name and password in their own settings, not in the URL"
    return None


@dataclass(frozen=True)
class AutoconfigSettings:
    enabled: bool = False
    schedule: str = field(default="daily", metadata={"cron": True})
    url: str = _checked("", _check_url, max_length=2048)
    auth: str = _choice("none", "none", "basic")
    username: str = _bounded("", max_length=256)
    password: str = _secret()
    timeout_s: int = _bounded(30, 1, 600)

    def cross_check(self) -> dict[str, str]:
        errors = {}
        if self.enabled and not self.url:
            errors["url"] = "required while autoconfiguration is enabled"
        if self.auth == "basic" and not self.username:
            errors["username"] = "required for basic authentication"
        return errors
