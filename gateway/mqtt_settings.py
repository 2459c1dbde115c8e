"""Settings of the MQTT publisher; part of ``Settings`` as ``mqtt`` (docs/mqtt.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mbusgw.gateway import report_checks
from mbusgw.gateway.settings_fields import _bounded, _checked, _secret

TOPIC_PART = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
MAX_PEM = 65_536


def check_topic_prefix(value: str) -> str | None:
    if not TOPIC_PART.fullmatch(value):
        return f"{value!r} is not a topic prefix (letters, digits, _ . - and inner slashes)"
    return None


def _pem(*, secret: bool = False) -> object:
    return field(default="", metadata={"max_length": MAX_PEM, "secret": secret, "pem": True})


@dataclass(frozen=True)
class MqttSettings:
    enabled: bool = False
    host: str = _checked("", report_checks.check_host)
    port: int = _bounded(0, 0, 65535, note="0 = 1883, 8883 with TLS")
    tls: bool = False
    ca_certificate: str = _pem()  # PEM; "" = the system's trust store
    client_certificate: str = _pem()  # PEM, with client_key: a client certificate
    client_key: str = _pem(secret=True)
    username: str = _bounded("", max_length=256)
    password: str = _secret()
    client_id: str = _bounded("", max_length=128, note="'' = mbusgw-<device name>")
    qos: int = _bounded(1, 0, 1, note="1: every reading acknowledged by the broker")
    retain: bool = True  # the latest value of each series retained on its own topic
    topic_prefix: str = _checked("mbusgw", check_topic_prefix)
    max_backlog: int = _bounded(
        50_000, 1, 10_000_000, note="readings per meter kept for an absent broker"
    )
    discovery: bool = True  # Home Assistant MQTT discovery
    discovery_prefix: str = _checked("homeassistant", check_topic_prefix)

    def cross_check(self) -> dict[str, str]:
        errors = {}
        if self.enabled and not self.host:
            errors["host"] = "the broker's host is needed"
        if bool(self.client_certificate) != bool(self.client_key):
            errors["client_key"] = "a client certificate needs its key, and a key its certificate"
        return errors
