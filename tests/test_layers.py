"""The layers of docs/architecture.md, checked on the import graph read from the sources.

core (sans-I/O, no clock) ← gateway internals ← the façade (``gateway/facade.py``) ← the
northbound services (``web/``, the push reports, SNMP and MQTT in ``gateway/services/``, and
the Modbus modules of ``gateway/services/``, which use only each other besides). Nothing in
``gateway/`` imports ``web/``: the web is started as a ``mbusgw.northbound`` entry point. No
import circles.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
assert _spec is not None and _spec.loader is not None
graph_tool = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = graph_tool
_spec.loader.exec_module(graph_tool)

FACADE = "mbusgw.gateway.facade"
# The data model: what a reading, a meter, a setting, an event, a health record is; pure code.
MODEL = {
    f"mbusgw.gateway.{name}"
    for name in (
        "autoconfig_settings",
        "cells",
        "clock",
        "cron",
        "dlms_settings",
        "errors",
        "events",
        "health",
        "live",
        "meters",
        "metrics_settings",
        "mqtt_settings",
        "modbus_encoding",
        "quantity_names",
        "report_catalog",
        "report_checks",
        "report_settings",
        "settings",
        "settings_fields",
        "slave_settings",
        "snmp_settings",
        "store.model",
        "terminal_settings",
        "time_settings",
    )
}
MODBUS = "mbusgw.gateway.services.modbus"  # the Modbus modules: modbus, modbus_map, ...
# core opens no files or sockets and reads no clock
CORE_IO_MODULES = r"os|io|socket|select|selectors|time|trio|asyncio|threading|pathlib|serial"
CORE_IO = re.compile(
    rf"^\s*(import|from)\s+({CORE_IO_MODULES})\b|\bopen\(|\.now\(|\.today\(|utcnow|"
    r"perf_counter|monotonic|time\.time\(",
    re.M,
)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return graph_tool.import_graph(ROOT)


def forbidden_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks a layer rule, as ``module -> target``."""
    wrong = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if not _allowed(module, target):
                wrong.append(f"{module} -> {target}")
    return wrong


def _allowed(module: str, target: str) -> bool:
    def within(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    if within(module, "mbusgw.core"):
        return within(target, "mbusgw.core")
    if within(target, "mbusgw.web"):
        return within(module, "mbusgw.web")
    if within(module, "mbusgw.web"):
        return within(target, "mbusgw.core") or target == FACADE or target in MODEL
    if module.startswith(MODBUS):
        return (
            within(target, "mbusgw.core")
            or target == FACADE
            or target in MODEL
            or target.startswith(MODBUS)
        )
    if within(module, "mbusgw.gateway.services"):
        return (
            within(target, "mbusgw.core")
            or within(target, "mbusgw.gateway.services")
            or target == FACADE
            or target in MODEL
        )
    return True


def test_every_import_keeps_to_its_layer(graph: dict[str, set[str]]) -> None:
    assert forbidden_arrows(graph) == []


def test_the_rules_catch_a_web_module_reaching_a_gateway_internal(
    graph: dict[str, set[str]],
) -> None:
    broken = {module: set(targets) for module, targets in graph.items()}
    broken["mbusgw.web.pages"].add("mbusgw.gateway.bus")
    broken["mbusgw.gateway.services.modbus"].add("mbusgw.gateway.reading")
    broken["mbusgw.gateway.services.modbus_stored"].add("mbusgw.gateway.store")
    broken["mbusgw.gateway.services.modbus_tcp"].add("mbusgw.gateway.supervisor")
    broken["mbusgw.gateway.services.reports.runner"].add("mbusgw.gateway.store")
    broken["mbusgw.gateway.app"].add("mbusgw.web.serve")
    broken["mbusgw.core.frame"].add("mbusgw.gateway.errors")
    assert forbidden_arrows(broken) == [
        "mbusgw.core.frame -> mbusgw.gateway.errors",
        "mbusgw.gateway.app -> mbusgw.web.serve",
        "mbusgw.gateway.services.modbus -> mbusgw.gateway.reading",
        "mbusgw.gateway.services.modbus_stored -> mbusgw.gateway.store",
        "mbusgw.gateway.services.modbus_tcp -> mbusgw.gateway.supervisor",
        "mbusgw.gateway.services.reports.runner -> mbusgw.gateway.store",
        "mbusgw.web.pages -> mbusgw.gateway.bus",
    ]


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    assert graph_tool.circles(graph) == []
    looped = {module: set(targets) for module, targets in graph.items()}
    looped["mbusgw.gateway.store.retention"].add("mbusgw.gateway.store.writer")
    assert graph_tool.circles(looped)  # the check sees a circle when there is one


def test_core_opens_no_files_or_sockets_and_reads_no_clock() -> None:
    found = []
    for path in sorted((ROOT / "core").glob("*.py*")):
        if path.suffix in (".py", ".pyx", ".pxd", ".pyi"):
            found += [f"{path.name}: {m.group(0)}" for m in CORE_IO.finditer(path.read_text())]
    assert found == []


def test_the_layers_see_every_module(graph: dict[str, set[str]]) -> None:
    # a parse that lost modules would make the rules pass vacuously
    layers = {graph_tool.layer(module) for module in graph}
    assert layers == {"core", "gateway", "web"}
    assert FACADE in graph and set(graph) >= MODEL
    assert any(FACADE in targets for module, targets in graph.items() if "web" in module)


def test_no_module_of_the_gateway_or_the_web_is_over_600_lines() -> None:
    # small modules with one job each (core/records.pyx may grow, split by .pxi includes)
    long = [
        f"{path.relative_to(ROOT)}: {n}"
        for top in ("gateway", "web")
        for path in sorted((ROOT / top).rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > 600
    ]
    assert long == []
