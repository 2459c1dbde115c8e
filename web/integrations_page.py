"""The Integrations page: the SNMP agent (where it listens, its receivers, the MIB to download,
the test notification) and the MQTT publisher (connection, counts, backlog); the endpoints of
the metrics and the event stream; the DLMS/COSEM server's state and counters. Presentation
only: the settings are edited through the API (``/api/v1/settings``, sections ``snmp``,
``mqtt``, ``metrics``, ``dlms``)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, request

from mbusgw.gateway.facade import MIB_NAME
from mbusgw.web.dlms_api import dlms_status
from mbusgw.web.errors import Forbidden
from mbusgw.web.pages import attempt, back, page
from mbusgw.web.routes import gw

blueprint = Blueprint("integrations_page", __name__)


@blueprint.route("/integrations", methods=["GET", "POST"])
async def integrations() -> Any:
    gateway = gw()
    problem = None
    if request.method == "POST":
        if not g.user.is_admin:
            raise Forbidden("only an administrator can send the test notification")
        if gateway.snmp is not None:
            results, problem = await attempt(gateway.snmp.send_test)
            if problem is None:
                got = ", ".join(
                    f"{name}: {'ok' if ok else 'failed'}" for name, ok in results.items()
                )
                return back("integrations_page.integrations", f"Test notification sent ({got})")
    settings = gateway.settings
    html = await page(
        "integrations.html",
        snmp=gateway.snmp.status() if gateway.snmp is not None else None,
        mqtt=gateway.mqtt.status_dict() if gateway.mqtt is not None else None,
        mqtt_settings=settings.mqtt,
        metrics=settings.metrics,
        dlms=dlms_status(),
        mib_name=MIB_NAME,
        error=problem.message if problem is not None else None,
    )
    return html, 400 if problem is not None else 200
