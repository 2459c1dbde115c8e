"""JSON-RPC 2.0 at ``/api/jsonrpc``: the REST operations under method names (one table).

Parameters are given by name (an object). Batches are answered as batches; notifications (no
``id``) are run and not answered. Parameters that do not fit the method (missing, unknown, of
the wrong type) are -32602 with ``error.data.details`` naming each one. An error of an
operation keeps its REST meaning in ``error.data``: ``{"code": <the REST error code>,
"status": <HTTP status>, "details": …}`` (-32000).

The methods and their parameters are published as an OpenRPC document (``/api/openrpc.json``
and the method ``rpc.discover``), generated from the table below and the functions' type hints,
the same that check every call, so the document cannot drift from the methods.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, update_wrapper
from typing import Any, Union, get_args, get_origin

from quart import Blueprint, Response, g, request

from mbusgw.core.jsonout import dumps
from mbusgw.web import device_ops, key_ops
from mbusgw.web import operations as ops
from mbusgw.web import values as vals
from mbusgw.web.auth import public, self_service
from mbusgw.web.errors import ApiError, BadRequest, Forbidden, PasswordChangeRequired, as_api_error
from mbusgw.web.openapi import VERSION
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


class InvalidParams(BadRequest):
    """The parameters do not fit the method; ``details`` maps each bad one to the reason."""

    code = "invalid_params"


# JSON Schema type and the Python types a JSON value of it arrives as
_JSON_TYPES: dict[Any, tuple[str, tuple[type, ...]]] = {
    str: ("string", (str,)),
    int: ("integer", (int,)),
    float: ("number", (int, float)),
    bool: ("boolean", (bool,)),
    type(None): ("null", (type(None),)),
    dict: ("object", (dict,)),
    list: ("array", (list,)),
}
TIME_SCHEMA = {
    "anyOf": [
        {"type": "string", "description": "ISO 8601 (UTC unless it has an offset)"},
        {"type": "number", "description": "seconds since 1970-01-01 UTC"},
    ]
}


@dataclass(frozen=True)
class Param:
    """One parameter of a method: its JSON Schema and the Python types it may arrive as
    (``None``: any JSON value)."""

    name: str
    required: bool
    schema: dict[str, Any]
    accepts: tuple[type, ...] | None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit, or None (JSON true is no number, though a Python int)."""
        if self.accepts is None:
            return None
        fits = isinstance(value, self.accepts)
        if isinstance(value, bool) and bool not in self.accepts:
            fits = False
        return None if fits else f"must be {self.expected}"

    @property
    def expected(self) -> str:
        kinds = self.schema.get("type", "a time")
        return " or ".join(kinds) if isinstance(kinds, list) else kinds


def _resolve(annotation: Any, scope: dict[str, Any]) -> Any:
    if isinstance(annotation, str):
        try:
            return eval(annotation, scope)  # the operations' own (postponed) annotations
        except NameError:
            return Any
    return annotation


def _schema_of(hint: Any) -> tuple[dict[str, Any], tuple[type, ...] | None]:
    """JSON Schema of a type hint and the Python types it accepts (None: anything)."""
    if hint is inspect.Parameter.empty or hint is Any:
        return {}, None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        names: list[str] = []
        accepts: tuple[type, ...] = ()
        for part in get_args(hint):
            schema, allowed = _schema_of(part)
            if allowed is None or "type" not in schema:
                return {}, None
            names.append(schema["type"])
            accepts += allowed
        return {"type": names}, accepts
    known = _JSON_TYPES.get(origin or hint)
    if known is None:
        return {}, None
    return {"type": known[0]}, known[1]


def _params_of(fn: Callable[..., Any], times: tuple[str, ...]) -> tuple[Param, ...]:
    scope = getattr(inspect.unwrap(fn), "__globals__", {})
    params = []
    for parameter in inspect.signature(fn).parameters.values():
        if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            raise TypeError(f"{fn.__name__}: a method names each of its parameters")
        required = parameter.default is inspect.Parameter.empty
        if parameter.name in times:
            schema: dict[str, Any] = dict(TIME_SCHEMA)
            accepts: tuple[type, ...] | None = (str, int, float)
            if not required:
                schema = {"anyOf": [*TIME_SCHEMA["anyOf"], {"type": "null"}]}
                accepts += (type(None),)
        else:
            schema, accepts = _schema_of(_resolve(parameter.annotation, scope))
        if not required:
            schema = {**schema, "default": parameter.default}
        params.append(Param(parameter.name, required, schema, accepts))
    return tuple(params)


@dataclass(frozen=True)
class Method:
    fn: Callable[..., Any]
    summary: str
    admin: bool = False
    times: tuple[str, ...] = ()  # parameters given as ISO 8601 text or epoch seconds

    @cached_property
    def params(self) -> tuple[Param, ...]:
        return _params_of(self.fn, self.times)

    def bind(self, given: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments, with times parsed; ``InvalidParams`` names every parameter
        that is missing, unknown or of the wrong type."""
        problems: dict[str, str] = {}
        known = {p.name: p for p in self.params}
        for name in given:
            if name not in known:
                problems[name] = "unknown parameter"
        arguments: dict[str, Any] = {}
        for param in self.params:
            if param.name not in given:
                if param.required:
                    problems[param.name] = "missing"
                continue
            value = given[param.name]
            problem = param.problem(value)
            if problem is not None:
                problems[param.name] = problem
            elif param.name in self.times and value is not None:
                try:
                    arguments[param.name] = parse_time(str(value), param.name)
                except BadRequest as error:
                    problems[param.name] = error.details[param.name]
            else:
                arguments[param.name] = value
        if problems:
            shown = "; ".join(f"{name}: {why}" for name, why in problems.items())
            raise InvalidParams(f"invalid params ({shown})", problems)
        return arguments


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

    update_wrapper(call, fn)  # the name, and the module whose names the annotations use
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        list(inspect.signature(fn).parameters.values())[1:]
    )
    return call


def _system_log(
    limit: int = 1000,
    since: float | None = None,
    until: float | None = None,
    min_level: int | None = None,
    max_level: int | None = None,
    origin: str | None = None,
) -> dict[str, Any]:
    filters = {"min_level": min_level, "max_level": max_level, "origin": origin}
    return ops.system_log(_gw(), limit, since=since, until=until, **filters)


def _admin(fn: Callable[..., Any], summary: str, **options: Any) -> Method:
    return Method(fn, summary, admin=True, **options)


METHODS: dict[str, Method] = {
    "device.info": Method(_with_gateway(device_ops.device_info), "The device: name, version, time"),
    "device.status": Method(_with_gateway(device_ops.device_status), "Lines, meters and services"),
    "device.restart": _admin(lambda: ops.stop_for(_gw(), "restart"), "Restart the gateway"),
    "device.factoryReset": _admin(
        lambda: ops.stop_for(_gw(), "factory_reset"), "Erase everything and restart"
    ),
    "meters.list": Method(_with_gateway(ops.list_meters), "Installed meters"),
    "meters.get": Method(_with_gateway(ops.get_meter), "One meter"),
    "meters.install": _admin(_with_gateway(ops.install_meters), "Install a meter list (CSV)"),
    "meters.template": Method(lambda: {"csv": ops.meter_template()}, "The meter-list template"),
    "meters.update": _admin(_with_gateway(ops.update_meter), "Change a meter's settings"),
    "meters.remove": _admin(_with_gateway(ops.remove_meter), "Remove a meter"),
    "meters.read": _admin(_with_gateway(ops.read_now), "Read a meter now"),
    "meters.reinstall": _admin(_with_gateway(ops.reinstall), "Reinstall one or every meter"),
    "wireless.status": Method(_with_gateway(ops.wireless_status), "Receivers and meters heard"),
    "meters.series": Method(_with_gateway(vals.meter_series), "A meter's series"),
    "values.latest": Method(_with_gateway(vals.latest_values), "The latest value of every series"),
    "values.series": Method(_series, "One series over a time range", times=("since", "until")),
    "values.live": Method(_with_gateway(vals.live_snapshot), "The continuous-read snapshot"),
    "values.readAll": _admin(_with_gateway(ops.read_all, state), "Read every meter now (a job)"),
    "log.meter": Method(
        _with_gateway(ops.meter_log), "A meter's read log", times=("since", "until")
    ),
    "log.system": Method(_system_log, "The system log", times=("since", "until")),
    "jobs.list": Method(_with_gateway(ops.list_jobs, state), "Jobs (scans, searches, reads)"),
    "jobs.get": Method(_with_gateway(ops.get_job, state), "One job"),
    "scans.start": _admin(_with_gateway(ops.start_scan, state), "Start a scan or a search"),
    "settings.get": Method(_with_gateway(ops.get_settings), "The settings (secrets masked)"),
    "settings.update": _admin(_with_gateway(ops.update_settings), "Change settings"),
    "keys.list": _admin(_with_gateway(key_ops.key_listing, state), "The key list (keys masked)"),
    "keys.add": _admin(_with_gateway(key_ops.add_key, state), "Add a key entry"),
    "keys.remove": _admin(_with_gateway(key_ops.remove_key, state), "Remove a key entry"),
    "keys.link": _admin(_with_gateway(key_ops.link_key, state), "Give a meter its key"),
    "keys.unlink": _admin(_with_gateway(key_ops.unlink_key, state), "Take a meter's key away"),
    "users.list": _admin(_users_list, "User accounts"),
    "users.add": _admin(_users_add, "Add a user account"),
    "users.update": _admin(_users_update, "Change a user's password or role"),
    "users.delete": _admin(_users_delete, "Delete a user account"),
}
DISCOVER = "rpc.discover"  # OpenRPC's name for the method that returns the document


def openrpc_document() -> dict[str, Any]:
    """The OpenRPC 1.3 document of every method in ``METHODS``."""
    errors = [
        {"code": INVALID_PARAMS, "message": "invalid params: data.details names each one"},
        {"code": APPLICATION_ERROR, "message": "the operation failed: data has the REST error"},
    ]
    return {
        "openrpc": "1.3.2",
        "info": {
            "title": "mbusgw JSON-RPC",
            "version": VERSION,
            "description": (
                "The REST operations of /api/v1 under method names; parameters by name. "
                "Methods marked x-admin need the admin role."
            ),
        },
        "servers": [{"name": "this gateway", "url": "/api/jsonrpc"}],
        "methods": [
            {
                "name": name,
                "summary": method.summary,
                "paramStructure": "by-name",
                "params": [
                    {"name": p.name, "required": p.required, "schema": p.schema}
                    for p in method.params
                ],
                "result": {"name": "result", "schema": {}},
                "errors": errors,
                "x-admin": method.admin,
            }
            for name, method in METHODS.items()
        ],
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
    if name == DISCOVER:
        return None if notification else _answer(call_id, result=openrpc_document())
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        return None if notification else _answer(call_id, error=_error(NO_METHOD, "no method"))
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return _answer(call_id, error=_error(INVALID_PARAMS, "params must be an object"))
    try:
        result = await _run(method, params)
    except Exception as exc:
        known = exc if isinstance(exc, ApiError) else as_api_error(exc)
        if known is None:
            raise
        code = INVALID_PARAMS if isinstance(known, InvalidParams) else APPLICATION_ERROR
        data = {"code": known.code, "status": known.status, "details": known.details}
        return None if notification else _answer(call_id, error=_error(code, known.message, data))
    return None if notification else _answer(call_id, result=result)


async def _run(method: Method, params: dict[str, Any]) -> Any:
    user = g.user
    if user.must_change:
        raise PasswordChangeRequired("the default account must first change its name and password")
    if method.admin and not user.is_admin:
        raise Forbidden("this needs the admin role")
    result = method.fn(**method.bind(params))
    if inspect.isawaitable(result):
        result = await result
    return result


def _answer(call_id: Any, *, result: Any = None, error: Any = None) -> dict[str, Any]:
    if error is not None:
        return {"jsonrpc": "2.0", "error": error, "id": call_id}
    return {"jsonrpc": "2.0", "result": result, "id": call_id}


@blueprint.get("/api/openrpc.json")
@public
async def openrpc() -> Response:
    return _reply(openrpc_document())


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
