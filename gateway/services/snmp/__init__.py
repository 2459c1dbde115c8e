"""The SNMP v2c agent, its MIB (``MBUSGW-MIB.txt``) and its notifications."""

from mbusgw.gateway.services.snmp.objects import MIB_NAME, GatewayView, mib_text, package_version
from mbusgw.gateway.services.snmp.service import SnmpService, uptime_since

__all__ = [
    "MIB_NAME",
    "GatewayView",
    "SnmpService",
    "mib_text",
    "package_version",
    "uptime_since",
]
