"""The MQTT publisher's status over REST."""

from __future__ import annotations

from quart import Response

from mbusgw.web.errors import Conflict
from mbusgw.web.routes import gw, reply, route


@route("GET", "/mqtt/status", "MQTT publisher: connection, counts, backlog", "mqtt",
       response="MqttStatus")  # fmt: skip
async def mqtt_status() -> Response:
    service = gw().mqtt
    if service is None:
        raise Conflict("the MQTT service is not running")
    return reply(service.status_dict())
