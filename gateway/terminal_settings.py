"""Settings of the command-line terminal over TCP (manual 6.34; docs/terminal.md)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from mbusgw.gateway.settings_fields import _bounded, _checked, _parses, _secret

LEVELS = ("read", "configure", "administer")
"""Operation levels, lowest first: each may do what the ones below it may."""


def allowed_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The allow-list, comma or space separated addresses and networks; ValueError names the
    first bad entry."""
    networks = []
    for entry in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an address or a network") from None
    return networks


@dataclass(frozen=True)
class TerminalSettings:
    enabled: bool = False
    host: str = field(default="127.0.0.1", metadata={"ip": True})
    port: int = _bounded(2323, 0, 65535, note="0 = any free port")
    idle_timeout_s: int = _bounded(300, 1, 86_400, note="a silent session is closed after this")
    max_sessions: int = _bounded(4, 1, 64, note="connections beyond this are turned away")
    allow: str = _checked(
        "127.0.0.1/32 ::1/128",
        _parses(allowed_networks),
        max_length=4096,
        note="addresses and networks that may connect, space or comma separated",
    )
    read_password: str = _secret()
    configure_password: str = _secret()
    administer_password: str = _secret()

    def password(self, level: str) -> str:
        return getattr(self, f"{level}_password")

    def listener(self) -> tuple[bool, str, int]:
        """What the listening socket depends on: a change of it restarts the service."""
        return self.enabled, self.host, self.port

    def cross_check(self) -> dict[str, str]:
        errors = {}
        given = [level for level in LEVELS if self.password(level)]
        if self.enabled and not given:
            errors["enabled"] = "set at least one level's password first"
        seen: dict[str, str] = {}
        for level in given:
            other = seen.setdefault(self.password(level), level)
            if other != level:
                errors[f"{level}_password"] = f"must differ from the {other} password"
        return errors
