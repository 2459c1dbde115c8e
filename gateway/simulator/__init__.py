"""Simulated wired M-Bus lines with real timing, built from real meter frames.

The public surface: ``SimLine(meters, baud)``, ``SimMeter``/``make_meter`` for one meter,
``default_meters()`` for a realistic mix, ``scan_population()`` for scan tests, and the ways to
reach a line: ``serve_tcp`` (an M-Bus/TCP converter), ``serve_pty``/``open_pty`` (a serial
device), or ``SimLine.serve(stream)`` on any trio stream.
"""

from mbusgw.gateway.simulator.line import LineStats, SimLine
from mbusgw.gateway.simulator.meter import SimMeter
from mbusgw.gateway.simulator.population import (
    MEDIAN_TEMPLATE,
    default_meters,
    make_meter,
    random_ids,
    scan_population,
)
from mbusgw.gateway.simulator.serve import open_pty, open_tcp, serve_pty, serve_tcp
from mbusgw.gateway.simulator.telegrams import Identity, Template, bundled_templates

__all__ = [
    "MEDIAN_TEMPLATE",
    "Identity",
    "LineStats",
    "SimLine",
    "SimMeter",
    "Template",
    "bundled_templates",
    "default_meters",
    "make_meter",
    "open_pty",
    "open_tcp",
    "random_ids",
    "scan_population",
    "serve_pty",
    "serve_tcp",
]
