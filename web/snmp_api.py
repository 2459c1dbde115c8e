"""The SNMP agent over REST: its MIB (to load into a manager), its status, the test
notification."""

from __future__ import annotations

from quart import Response

from mbusgw.gateway.facade import MIB_NAME, SnmpControl, mib_text
from mbusgw.web.errors import BadRequest, Conflict
from mbusgw.web.routes import download, gw, reply, route


def snmp_service() -> SnmpControl:
    service = gw().snmp
    if service is None:
        raise Conflict("the SNMP service is not running")
    return service


@route("GET", f"/snmp/{MIB_NAME}.txt", "The gateway's MIB (SMIv2) for SNMP managers", "snmp",
       media="text")  # fmt: skip
async def snmp_mib() -> Response:
    return download(mib_text(), "text/plain", f"{MIB_NAME}.txt")


@route("GET", "/snmp/status", "SNMP agent and notification receivers", "snmp",
       response="SnmpStatus")  # fmt: skip
async def snmp_status() -> Response:
    return reply(snmp_service().status())


@route("POST", "/snmp/test-notification",
       "Send the test notification to every receiver; which ones got it", "snmp",
       access="admin", response="SnmpTestResult")  # fmt: skip
async def snmp_test_notification() -> Response:
    service = snmp_service()
    try:
        results = await service.send_test()
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return reply({"receivers": results, "ok": all(results.values())})
