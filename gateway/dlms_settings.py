"""Settings of the DLMS/COSEM server over TCP (docs/dlms.md); part of ``Settings`` as
``dlms``."""

from __future__ import annotations

from dataclasses import dataclass, field

from mbusgw.gateway.settings_fields import _bounded, _checked

LLS_PASSWORD_MAX = 32  # octets; meters commonly take 8, clients send what they are given


def check_lls_password(value: object) -> str | None:
    if not isinstance(value, str):
        return "must be text"
    if not value.isascii() or not value.isprintable():
        return "printable ASCII characters only"
    return None


@dataclass(frozen=True)
class DlmsSettings:
    enabled: bool = False
    host: str = field(default="0.0.0.0", metadata={"ip": True})
    port: int = _bounded(4059, 0, 65535, note="4059 is the registered DLMS/COSEM port; 0 = any")
    public_client: bool = True  # client SAP 16: the association without security
    lls_password: str = _checked(
        "",
        check_lls_password,
        secret=True,
        max_length=LLS_PASSWORD_MAX,
        note="client SAP 17 (low-level security); empty: that association is refused",
    )
    max_connections: int = _bounded(4, 1, 64, note="connections beyond this are closed at once")
    idle_timeout_s: int = _bounded(
        120, 1, 86_400, note="a connection without a whole request is closed after this"
    )
