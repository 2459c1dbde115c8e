"""Settings of the services that let an existing M-Bus master use the gateway (manual
6.26-6.28): the virtual M-Bus and two transparent M-Bus services over TCP, and two serial
ports serving either (docs/slave.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mbusgw.gateway.settings_fields import _bounded, _checked, _choice

NO_ADDRESS = -1
SLAVE_SERVICES = [
    "virtual-mbus",
    "transparent-mbus-1",
    "transparent-mbus-2",
]  # restarted when the ``slave`` settings change


@dataclass(frozen=True)
class VirtualMeterSettings:
    """Per meter: the primary address a master uses for it on the virtual bus."""

    primary: int = _bounded(
        NO_ADDRESS, NO_ADDRESS, 250, note="-1 = the meter's own primary address, if it has one"
    )


@dataclass(frozen=True)
class VirtualMBusSettings:
    """Virtual M-Bus over TCP: masters read the installed meters' latest readings."""

    enabled: bool = False
    host: str = field(default="0.0.0.0", metadata={"ip": True})
    port: int = _bounded(10001, 0, 65535, note="0 = any free port")
    max_connections: int = _bounded(64, 1, 256)
    activity_timeout_s: int = _bounded(300, 0, 86_400, note="0 = never close an idle master")
    validity_s: int = _bounded(
        86_400, 0, 31_622_400, note="older readings are not served as current; 0 = any age"
    )
    meters: dict[str, VirtualMeterSettings] = field(
        default_factory=dict, metadata={"key": re.compile(r"\S{1,64}"), "key_note": "a meter key"}
    )


@dataclass(frozen=True)
class TransparentMBusSettings:
    """Transparent M-Bus over TCP: one master at a time uses a physical line."""

    enabled: bool = False
    host: str = field(default="0.0.0.0", metadata={"ip": True})
    port: int = _bounded(10002, 0, 65535, note="0 = any free port")
    line: str = field(default="", metadata={"max_length": 64, "note": "interface; '' = first"})
    packing: str = _choice("mbus", "mbus", "transparent")
    packing_interval_ms: int = _bounded(20, 0, 10_000, note="bytes gathered this long are sent")
    inactivity_timeout_s: int = _bounded(60, 0, 86_400, note="0 = never end an idle session")


SLAVE_BAUDS = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400)


def _baud_problem(baud: int) -> str | None:
    return None if baud in SLAVE_BAUDS else f"must be one of {', '.join(map(str, SLAVE_BAUDS))}"


@dataclass(frozen=True)
class SlavePortSettings:
    """A serial port on which a master is served the virtual or a transparent M-Bus."""

    enabled: bool = False
    device: str = field(default="", metadata={"max_length": 256})
    baud: int = _checked(2400, _baud_problem, note="300, 600 … 38400")
    serves: str = _choice("virtual", "virtual", "transparent")
    line: str = field(default="", metadata={"max_length": 64, "note": "transparent: interface"})
    packing: str = _choice("mbus", "mbus", "transparent")
    packing_interval_ms: int = _bounded(20, 0, 10_000)
    activity_timeout_s: int = _bounded(60, 0, 86_400, note="a session ends after this silence")

    def cross_check(self) -> dict[str, str]:
        """A port that is switched on needs its device."""
        return (
            {"device": "an enabled port needs a device"} if self.enabled and not self.device else {}
        )


@dataclass(frozen=True)
class SlaveSettings:
    """The services that let an existing M-Bus master use the gateway (docs/slave.md)."""

    virtual: VirtualMBusSettings = field(default_factory=VirtualMBusSettings)
    transparent_1: TransparentMBusSettings = field(default_factory=TransparentMBusSettings)
    transparent_2: TransparentMBusSettings = field(
        default_factory=lambda: TransparentMBusSettings(port=10003)
    )
    port_1: SlavePortSettings = field(default_factory=SlavePortSettings)
    port_2: SlavePortSettings = field(default_factory=SlavePortSettings)
