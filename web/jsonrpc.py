"""JSON-RPC 2.0 at ``/api/jsonrpc``: the REST operations under method names (one table).

Parameters are given by name (an object). Batches are answered as batches; notifications (no
``id``) are run and not answered. An error of an operation keeps its REST meaning in
``error.data``: ``{"code": <the REST error code>, "status": <HTTP status>, "details": …}``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quart import Blueprint, Response, g, request

from mbusgw.core.jsonout import dumps
from mbusgw.web import operations as ops
from mbusgw.web import values as vals
from mbusgw.web.auth import self_service
from mbusgw.web.errors import ApiError, BadRequest, Forbidden, PasswordChangeRequired, as_api_error
from mbusgw.web.params import parse_time
from mbusgw.web.state import state

blueprint = Blueprint("jsonrpc", __name__)

PARSE_ERROR, INVALID_REQUEST, NO_METHOD, INVALID_PARAMS, INTERNAL = (
    -32700,
    -32600,
    -32601,
    -32602,
    -32603,
)
APPLICATION_ERROR = -32000
MAX_BATCH = 100


@dataclass(frozen=True)
class Method:
    fn: Callable[..., Any]
    admin: bool = False
    times: tuple[str, ...] = ()  # parameters given as ISO 8601 text or epoch seconds


def _gw() -> Any:
    return state().gateway


def _users() -> Any:
    return state().auth.users


async def _series(
    key: str,
    series: int,
    since: float | None = None,
    until: float | None = None,
    limit: int = vals.DEFAULT_SERIES_PAGE,
    as_float: bool = False,
) -> dict[str, Any]:
    return vals.series_values(_gw(), key, series, since, until, limit, as_float)[0]


async def _users_list() -> dict[str, Any]:
    return {"users": [u.public() for u in _users().all()]}


async def _users_add(name: str, password: str, role: str) -> dict[str, Any]:
    return (await _users().add(name, password, role)).public()


async def _users_update(name: str, password: str | None = None, role: str | None = None) -> dict:
    user = await _users().update(name, password=password, role=role)
    if password is not None:
        state().auth.sessions.drop_user(name)
    return user.public()


async def _users_delete(name: str) -> dict[str, Any]:
    await _users().delete(name)
    state().auth.sessions.drop_user(name)
    return {"ok": True}


def _with_gateway(fn: Callable[..., Any], first: Callable[[], Any] = _gw) -> Callable[..., Any]:
    """An operation of ``web.operations`` with the gateway (or the web state) as its first
    argument."""

    def call(**params: Any) -> Any:
        return fn(first(), **params)

    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        list(inspect.signature(fn).parameters.values())[1:]
    )
    return call


METHODS: dict[str, Method] = {
    "device.info": Method(_with_gateway(ops.device_info)),
    "device.status": Method(_with_gateway(ops.device_status)),
    "device.restart": Method(lambda: ops.stop_for(_gw(), "restart"), admin=True),
    "device.factoryReset": Method(lambda: ops.stop_for(_gw(), "factory_reset"), admin=True),
    "meters.list": Method(_with_gateway(ops.list_meters)),
    "meters.get": Method(_with_gateway(ops.get_meter)),
    "meters.install": Method(_with_gateway(ops.install_meters), admin=True),
    "meters.template": Method(lambda: {"csv": ops.meter_template()}),
    "meters.update": Method(_with_gateway(ops.update_meter), admin=True),
    "meters.remove": Method(_with_gateway(ops.remove_meter), admin=True),
    "meters.read": Method(_with_gateway(ops.read_now), admin=True),
    "meters.reinstall": Method(_with_gateway(ops.reinstall), admin=True),
    "wireless.status": Method(_with_gateway(ops.wireless_status)),
    "meters.series": Method(_with_gateway(vals.meter_series)),
    "values.latest": Method(_with_gateway(vals.latest_values)),
    "values.series": Method(_series, times=("since", "until")),
    "values.live": Method(_with_gateway(vals.live_snapshot)),
    "values.readAll": Method(_with_gateway(ops.read_all, state), admin=True),
    "log.meter": Method(_with_gateway(ops.meter_log), times=("since", "until")),
    "log.system": Method(_with_gateway(ops.system_log), times=("since", "until")),
    "jobs.list": Method(_with_gateway(ops.list_jobs, state)),
    "jobs.get": Method(_with_gateway(ops.get_job, state)),
    "scans.start": Method(_with_gateway(ops.start_scan, state), admin=True),
    "settings.get": Method(_with_gateway(ops.get_settings)),
    "settings.update": Method(_with_gateway(ops.update_settings), admin=True),
    "keys.list": Method(_with_gateway(ops.key_listing, state), admin=True),
    "keys.add": Method(_with_gateway(ops.add_key, state), admin=True),
    "keys.remove": Method(_with_gateway(ops.remove_key, state), admin=True),
    "keys.link": Method(_with_gateway(ops.link_key, state), admin=True),
    "keys.unlink": Method(_with_gateway(ops.unlink_key, state), admin=True),
    "users.list": Method(_users_list, admin=True),
    "users.add": Method(_users_add, admin=True),
    "users.update": Method(_users_update, admin=True),
    "users.delete": Method(_users_delete, admin=True),
}


def _error(code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return error


async def _call(call: Any) -> dict[str, Any] | None:
    if not isinstance(call, dict) or call.get("jsonrpc") != "2.0":
        return _answer(None, error=_error(INVALID_REQUEST, "not a JSON-RPC 2.0 request"))
    call_id = call.get("id")
    if call_id is not None and not isinstance(call_id, str | int) or isinstance(call_id, bool):
        return _answer(None, error=_error(INVALID_REQUEST, "id must be a string or a number"))
    notification = "id" not in call
    name, params = call.get("method"), call.get("params", {})
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        return None if notification else _answer(call_id, error=_error(NO_METHOD, "no method"))
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return _answer(call_id, error=_error(INVALID_PARAMS, "params must be an object"))
    try:
        result = await _run(method, params)
    except ApiError as exc:
        error = _error(
            APPLICATION_ERROR,
            exc.message,
            {"code": exc.code, "status": exc.status, "details": exc.details},
        )
        return None if notification else _answer(call_id, error=error)
    except Exception as exc:
        known = as_api_error(exc)
        if known is None:
            raise
        error = _error(
            APPLICATION_ERROR,
            known.message,
            {"code": known.code, "status": known.status, "details": known.details},
        )
        return None if notification else _answer(call_id, error=error)
    return None if notification else _answer(call_id, result=result)


async def _run(method: Method, params: dict[str, Any]) -> Any:
    user = g.user
    if user.must_change:
        raise PasswordChangeRequired("the default account must first change its name and password")
    if method.admin and not user.is_admin:
        raise Forbidden("this needs the admin role")
    signature = inspect.signature(method.fn)
    try:
        bound = signature.bind(**params)
    except TypeError as exc:
        raise BadRequest(f"invalid params: {exc}") from None
    for name in method.times:
        value = bound.arguments.get(name)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            bound.arguments[name] = parse_time(str(value), name)
    for name, value in bound.arguments.items():
        expected = signature.parameters[name].annotation
        if not _fits(value, expected):
            raise BadRequest(f"invalid params: {name} must be {expected}", {name: "wrong type"})
    result = method.fn(**bound.arguments)
    if inspect.isawaitable(result):
        result = await result
    return result


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "None": (type(None),),
}


def _fits(value: Any, annotation: Any) -> bool:
    """Does a JSON value fit a parameter's annotation (``str | None``, ``dict[str, Any]`` …)?"""
    if not isinstance(annotation, str):
        return True
    allowed: tuple[type, ...] = ()
    for part in annotation.split("|"):
        part = part.strip()
        if part.startswith("dict"):
            allowed += (dict,)
        elif part in _JSON_TYPES:
            allowed += _JSON_TYPES[part]
        else:
            return True
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed)


def _answer(call_id: Any, *, result: Any = None, error: Any = None) -> dict[str, Any]:
    if error is not None:
        return {"jsonrpc": "2.0", "error": error, "id": call_id}
    return {"jsonrpc": "2.0", "result": result, "id": call_id}


@blueprint.post("/api/jsonrpc")
@self_service
async def endpoint() -> Response:
    raw = await request.get_data(as_text=False)
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        payload = ...
    if payload is ...:
        return _reply(_answer(None, error=_error(PARSE_ERROR, "the body is not JSON")))
    if isinstance(payload, list):
        if not payload or len(payload) > MAX_BATCH:
            return _reply(
                _answer(None, error=_error(INVALID_REQUEST, f"a batch has 1-{MAX_BATCH} calls"))
            )
        answers = [a for a in [await _call(c) for c in payload] if a is not None]
        return _reply(answers) if answers else Response(status=204)
    answer = await _call(payload)
    return _reply(answer) if answer is not None else Response(status=204)


def _reply(data: Any) -> Response:
    return Response(dumps(data), mimetype="application/json")
