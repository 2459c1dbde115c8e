"""Topics and payloads of the MQTT publisher (docs/mqtt.md): one message per reading, the
latest value of each series retained, Home Assistant discovery configs. Pure functions."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mbusgw.core.jsonout import dumps
from mbusgw.core.units import medium_name
from mbusgw.gateway.meters import Meter

# EN 13757-3 quantity → Home Assistant (device_class, state_class); None: no device class
HA_CLASSES: dict[str, tuple[str | None, str]] = {
    "energy": ("energy", "total_increasing"),
    "volume": ("volume", "total_increasing"),
    "mass": ("weight", "total_increasing"),
    "power": ("power", "measurement"),
    "volume_flow": ("volume_flow_rate", "measurement"),
    "mass_flow": (None, "measurement"),
    "flow_temperature": ("temperature", "measurement"),
    "return_temperature": ("temperature", "measurement"),
    "external_temperature": ("temperature", "measurement"),
    "temperature_difference": (None, "measurement"),
    "pressure": ("pressure", "measurement"),
    "operating_time": ("duration", "total_increasing"),
    "on_time": ("duration", "total_increasing"),
    "hca": (None, "total_increasing"),
}
# a volume meter's medium (EN 13757-3 code) decides what Home Assistant calls its volume
VOLUME_BY_MEDIUM = {0x03: "gas", 0x06: "water", 0x07: "water", 0x15: "water", 0x16: "water"}
SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class SeriesValue:
    series: int
    quantity: str
    unit: str
    description: str
    value: object  # exact: int, Decimal, str (text), …
    number: float  # NaN where the value is not a number


@dataclass(frozen=True)
class Topics:
    prefix: str
    discovery_prefix: str

    @property
    def availability(self) -> str:
        return f"{self.prefix}/status"

    @property
    def gateway_state(self) -> str:
        return f"{self.prefix}/gateway"

    def reading(self, meter: str) -> str:
        return f"{self.prefix}/meters/{safe(meter)}/reading"

    def series(self, meter: str, series: int) -> str:
        return f"{self.series_level(meter)}{series}"

    def series_level(self, meter: str) -> str:
        """The meter's series topics up to the series id (made once per meter and batch)."""
        return f"{self.prefix}/meters/{safe(meter)}/series/"

    def discovery(self, node: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/sensor/{node}/{object_id}/config"


def safe(text: str) -> str:
    """A topic level or id from a meter key (keys are hex digits and line names already)."""
    return SAFE.sub("_", text)


def iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def _exact(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)  # exact, as text: a JSON number would be read as a float
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def value_dict(value: SeriesValue) -> dict[str, Any]:
    return {
        "series": value.series,
        "quantity": value.quantity,
        "unit": value.unit,
        "description": value.description,
        "value": _exact(value.value),
        "float": _number(value.number),
    }


def identity(meter: Meter) -> dict[str, Any]:
    return {
        "key": meter.key,
        "position": meter.position,
        "secondary_address": meter.secondary_address,
        "manufacturer": meter.manufacturer,
        "medium": medium_name(meter.medium) if meter.medium is not None else None,
        "version": meter.version,
        "interface": meter.interface,
    }


# A reading's message and its series' messages are made from parts each written once per
# reading: each value's JSON, the meter's identity, the reading's time.


def value_json(value: SeriesValue) -> str:
    return dumps(value_dict(value))


def identity_json(meter: Meter) -> str:
    return dumps(identity(meter))


def reading_message(meter_json: str, read_at: str, value_jsons: list[str]) -> bytes:
    return (
        f'{{"meter":{meter_json},"read_at":{dumps(read_at)},"status":"ok",'
        f'"values":[{",".join(value_jsons)}]}}'
    ).encode()


def series_state(read_at: str, value_json: str) -> bytes:
    # value_json is an object: the time goes in as its first member
    return f'{{"read_at":{dumps(read_at)},{value_json[1:]}'.encode()


def gateway_device(node: str, name: str, version: str) -> dict[str, Any]:
    return {
        "identifiers": [node],
        "name": name,
        "manufacturer": "mbusgw",
        "model": "M-Bus gateway",
        "sw_version": version,
    }


def meter_discovery(
    topics: Topics, gateway_node: str, meter: Meter, value: SeriesValue
) -> tuple[str, bytes] | None:
    """A sensor config for one series of a measured quantity (None for the others: numbers,
    dates, texts and flags stay in the readings and the series topics)."""
    if math.isnan(value.number) or value.quantity not in HA_CLASSES:
        return None
    device_class, state_class = HA_CLASSES[value.quantity]
    if value.quantity == "volume":
        device_class = VOLUME_BY_MEDIUM.get(meter.medium or -1, "volume")
    node = f"{gateway_node}_{safe(meter.key)}"
    object_id = f"series_{value.series}"
    label = value.quantity.replace("_", " ")
    config: dict[str, Any] = {
        "name": f"{label} {value.description}".strip(),
        "unique_id": f"{node}_{object_id}",
        "object_id": f"{node}_{object_id}",
        "state_topic": topics.series(meter.key, value.series),
        "value_template": "{{ value_json.float }}",
        "json_attributes_topic": topics.series(meter.key, value.series),
        "availability_topic": topics.availability,
        "state_class": state_class,
        "device": {
            "identifiers": [node],
            "name": meter.position or meter.key,
            "manufacturer": meter.manufacturer or "unknown",
            "model": f"M-Bus meter, {medium_name(meter.medium)}",
            "serial_number": meter.secondary_address or meter.key,
            "via_device": gateway_node,
        },
    }
    if value.unit:
        config["unit_of_measurement"] = value.unit
    if device_class is not None:
        config["device_class"] = device_class
    return topics.discovery(node, object_id), dumps(config).encode()


def gateway_discovery(
    topics: Topics, node: str, name: str, version: str
) -> list[tuple[str, bytes]]:
    """The gateway as its own device: its meter counts and aggregate status."""
    device = gateway_device(node, name, version)
    found = []
    for field, label in (("meters_failed", "meters failed"), ("meters_active", "meters active")):
        config = {
            "name": label,
            "unique_id": f"{node}_{field}",
            "object_id": f"{node}_{field}",
            "state_topic": topics.gateway_state,
            "value_template": f"{{{{ value_json.{field} }}}}",
            "availability_topic": topics.availability,
            "state_class": "measurement",
            "device": device,
        }
        found.append((topics.discovery(node, field), dumps(config).encode()))
    status = {
        "name": "status",
        "unique_id": f"{node}_status",
        "object_id": f"{node}_status",
        "state_topic": topics.gateway_state,
        "value_template": "{{ value_json.status }}",
        "availability_topic": topics.availability,
        "device": device,
    }
    found.append((topics.discovery(node, "status"), dumps(status).encode()))
    return found
