"""Settings of the Prometheus metrics at ``/metrics``; part of ``Settings`` as ``metrics``."""

from __future__ import annotations

from dataclasses import dataclass

from mbusgw.gateway.settings_fields import _secret


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = True
    # a scraper's own bearer token; the API's tokens and accounts are accepted as well
    token: str = _secret()
    # each meter's latest values as gauges: one time series per meter and value, so off by
    # default to keep the cardinality of a large installation low
    meter_values: bool = False
