"""The MQTT publisher: readings, retained series, Home Assistant discovery (docs/mqtt.md)."""

from mbusgw.gateway.services.mqtt.service import MqttService

__all__ = ["MqttService"]
