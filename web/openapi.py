"""The OpenAPI 3.1 document of ``/api/v1``, built from the route table of ``api_v1`` and the
schemas of ``web/api_schemas.py`` (one place each), so the document cannot drift from the
routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mbusgw.web.api_schemas import BOOL, STR, obj, ref
from mbusgw.web.api_schemas import SCHEMAS as CORE_SCHEMAS
from mbusgw.web.service_schemas import SERVICE_SCHEMAS

SCHEMAS = CORE_SCHEMAS | SERVICE_SCHEMAS  # every schema the document names

VERSION = "1.0.0"


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False
    where: str = "query"


def build_document(routes: list[Any]) -> dict[str, Any]:
    """The OpenAPI document for ``routes`` (``api_v1.ROUTES``)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.name,
            "summary": route.summary,
            "tags": [route.tag],
            "responses": _responses(route),
        }
        params = [
            {"name": p.name, "in": p.where, "required": p.required or p.where == "path"}
            | {"schema": p.schema, "description": p.description}
            for p in route.params
        ]
        if params:
            operation["parameters"] = params
        if route.body:
            operation["requestBody"] = _request_body(route.body)
        if route.access == "public":
            operation["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mbusgw REST API",
            "version": VERSION,
            "description": (
                "The M-Bus gateway's REST API. Authenticate with an API token "
                "(`Authorization: Bearer mbgw.…`, created under My account), HTTP basic auth, or a "
                "browser session (then send the session's CSRF token as `X-CSRF-Token` with "
                'every change). Errors are JSON: `{"error": {"code", "message", '
                '"details"}}`. The same operations are offered over JSON-RPC 2.0 at '
                "`/api/jsonrpc`."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"token": []}, {"basic": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "mbusgw_session"},
            },
        },
    }


MEDIA = {
    "json": "application/json",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "toml": "application/toml",
    "binary": "application/octet-stream",
    "event-stream": "text/event-stream",
    "text": "text/plain",
}

ERROR_STATUSES = {
    400: "bad input; nothing was changed",
    401: "not signed in",
    403: "not allowed",
    404: "no such thing",
    409: "conflicts with the current state",
    413: "too large",
    422: "a frame that cannot be decoded",
    429: "too many failed logins",
}


def _responses(route: Any) -> dict[str, Any]:
    description = route.response_description or "success"
    if route.media != "json":
        content = {MEDIA[route.media]: {"schema": {"type": "string"}}}
    elif route.response:
        content = {"application/json": {"schema": ref(route.response)}}
    else:
        content = None
    success: dict[str, Any] = {"description": description}
    if content:
        success["content"] = content
    responses: dict[str, Any] = {str(route.status): success}
    error = {"application/json": {"schema": ref("Error")}}
    for status, text in ERROR_STATUSES.items():
        if status == 401 and route.access == "public":
            continue
        responses[str(status)] = {"description": text, "content": error}
    return responses


def _request_body(body: str) -> dict[str, Any]:
    if body == "csv":
        return {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": obj(("file",), file={"type": "string", "format": "binary"})
                },
            },
        }
    if body == "file":
        return {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": obj(
                        ("file",),
                        file={"type": "string", "format": "binary"},
                        password=STR,
                        key={"type": "string", "format": "binary"},
                        replace=BOOL,
                    )
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    return {"required": True, "content": {"application/json": {"schema": ref(body)}}}
