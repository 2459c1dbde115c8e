"""Autoconfiguration's status in the API (``/api/v1/autoconfig``) and on a page, and a fetch
on demand (docs/autoconfig.md)."""

from __future__ import annotations

from typing import Any

from quart import Response

from mbusgw.web.auth import admin_only
from mbusgw.web.errors import Conflict
from mbusgw.web.pages import attempt, back, blueprint, page
from mbusgw.web.routes import gw, reply, route

SERVICE = "autoconfig"


def service() -> Any:
    """The running autoconfiguration service (``Conflict`` when it is not running)."""
    found = gw().running_northbound.get(SERVICE)
    if found is None:
        raise Conflict("the autoconfiguration service is not running")
    return found


def status() -> dict[str, Any]:
    settings = gw().settings.autoconfig
    return {"enabled": settings.enabled, "url": settings.url, **service().status.as_dict()}


@route("GET", "/autoconfig", "Autoconfiguration: last fetch, last applied file, errors",
       "autoconfig", response="AutoconfigStatus")  # fmt: skip
async def autoconfig_status() -> Response:
    return reply(status())


@route("POST", "/autoconfig/run", "Fetch and apply the autoconfiguration file now",
       "autoconfig", access="admin", response="AutoconfigStatus")  # fmt: skip
async def autoconfig_run() -> Response:
    await service().run_once()
    return reply(status())


@blueprint.get("/autoconfig")
async def autoconfig() -> str:
    return await page("autoconfig.html", status=status())


@blueprint.post("/autoconfig/run")
@admin_only
async def autoconfig_fetch() -> Response:
    result, error = await attempt(lambda: service().run_once())
    if error is not None:
        return back("pages.autoconfig", f"Autoconfiguration: {error.message}")
    return back("pages.autoconfig", f"Autoconfiguration: {result.result.replace('_', ' ')}")
