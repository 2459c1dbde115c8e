"""The route table of ``/api/v1``: ``@route(method, path, …)`` registers a view on the blueprint
and records it for the OpenAPI document (``web/api_v1.py`` declares every route with it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quart import Blueprint, Response

from mbusgw.core.jsonout import dumps
from mbusgw.gateway.facade import GatewayHandle
from mbusgw.web.api_schemas import BOOL, INT, STR
from mbusgw.web.auth import admin_only, public, self_service
from mbusgw.web.openapi import Param
from mbusgw.web.plain import MAX_SERIES_PAGE
from mbusgw.web.state import state

blueprint = Blueprint("api_v1", __name__, url_prefix="/api/v1")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    name: str
    summary: str
    tag: str
    access: str = "user"  # public | user | admin | self
    params: tuple[Param, ...] = ()
    body: str | None = None  # a schema name, "csv" or "file"
    response: str | None = None
    media: str = "json"
    status: int = 200
    response_description: str = ""


ROUTES: list[Route] = []

SINCE = Param("since", STR, "start of the range (ISO 8601 or epoch s), inclusive")
UNTIL = Param("until", STR, "end of the range, exclusive; a bare date includes that day")
METER = Param("key", STR, "the meter's key (its secondary address)", where="path")


def route(method: str, path: str, summary: str, tag: str, **options: Any) -> Callable:
    def register(view: Callable) -> Callable:
        access = options.get("access", "user")
        if access == "public":
            public(view)
        elif access == "admin":
            admin_only(view)
        elif access == "self":
            self_service(view)
        rule = path.replace("{", "<").replace("}", ">")
        blueprint.add_url_rule(rule, view.__name__, view, methods=[method])
        ROUTES.append(Route(method, path, view.__name__, summary, tag, **options))
        return view

    return register


def reply(data: Any, status: int = 200) -> Response:
    """JSON with exact decimals (``core.jsonout``: never through float)."""
    return Response(dumps(data), status=status, mimetype="application/json")


def download(body: str | bytes, media: str, filename: str) -> Response:
    response = Response(body, mimetype=media)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def gw() -> GatewayHandle:
    return state().gateway


SERIES_PARAMS = (
    METER,
    Param("series", INT, "the series id", where="path"),
    SINCE,
    UNTIL,
    Param("limit", INT, f"values per page (1-{MAX_SERIES_PAGE})"),
    Param("float", BOOL, "values as floating point numbers (for graphs)"),
)

LOG_PARAMS = (
    SINCE,
    UNTIL,
    Param("min_level", {"type": "integer", "minimum": -1, "maximum": 2}, "lowest level"),
    Param("max_level", {"type": "integer", "minimum": -1, "maximum": 2}, "highest level"),
    Param("origin", STR, "only entries of this origin"),
)
