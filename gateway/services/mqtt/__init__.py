"""The MQTT publisher (``service``): readings, retained series, Home Assistant discovery
(docs/mqtt.md)."""
