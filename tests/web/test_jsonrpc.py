"""JSON-RPC parameters: every bad one is named (-32602), and the OpenRPC document lists every
method of the table with the parameters the calls are checked against."""

from __future__ import annotations

import inspect
from typing import Any

from jsonschema import Draft202012Validator
from webclient import Client, body
from webrig import METER_CSV

from mbusgw.web.jsonrpc import METHODS

INVALID_PARAMS = -32602


async def rpc(client: Client, method: str, params: Any = None) -> dict[str, Any]:
    call: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        call["params"] = params
    response = await client.post("/api/jsonrpc", json=call)
    assert response.status_code == 200
    return body(response)


async def test_invalid_params_are_named(admin: Client) -> None:
    unknown = await rpc(admin, "meters.list", {"passive": True, "bogus": 1})
    assert unknown["error"]["code"] == INVALID_PARAMS
    assert unknown["error"]["data"]["details"] == {"bogus": "unknown parameter"}
    assert "unexpected keyword" not in unknown["error"]["message"]
    assert "bogus" in unknown["error"]["message"]

    missing = await rpc(admin, "values.series", {"series": 1})
    assert missing["error"]["code"] == INVALID_PARAMS
    assert missing["error"]["data"]["details"] == {"key": "missing"}

    wrong = await rpc(admin, "values.series", {"key": 5, "series": "1", "as_float": 1})
    assert wrong["error"]["code"] == INVALID_PARAMS
    assert wrong["error"]["data"]["details"] == {
        "key": "must be string",
        "series": "must be integer",
        "as_float": "must be boolean",
    }

    time = await rpc(admin, "log.system", {"since": "yesterday", "limit": True})
    assert time["error"]["code"] == INVALID_PARAMS
    assert set(time["error"]["data"]["details"]) == {"since", "limit"}

    refused_filter = await rpc(admin, "log.system", {"level": 2})
    assert refused_filter["error"]["data"]["details"] == {"level": "unknown parameter"}


async def test_operation_errors_stay_application_errors(admin: Client) -> None:
    missing = await rpc(admin, "meters.get", {"key": "nope"})
    assert missing["error"]["code"] == -32000
    assert missing["error"]["data"]["code"] == "not_found"
    installed = await rpc(admin, "meters.install", {"csv": METER_CSV})
    assert installed["result"]["installed"] == 3
    log = await rpc(admin, "log.system", {"limit": 5, "min_level": 0, "since": 0})
    assert log["result"]["truncated"] is False


async def test_openrpc_document_lists_every_method_with_its_params(
    anonymous: Client, admin: Client
) -> None:
    response = await anonymous.get("/api/openrpc.json")
    assert response.status_code == 200
    document = body(response)
    assert document["openrpc"].startswith("1.")
    assert document == (await rpc(admin, "rpc.discover"))["result"]
    methods = {m["name"]: m for m in document["methods"]}
    assert set(methods) == set(METHODS)
    for name, method in METHODS.items():
        described = methods[name]
        assert described["summary"] and described["paramStructure"] == "by-name"
        assert described["x-admin"] is method.admin
        signature = inspect.signature(method.fn).parameters
        assert [p["name"] for p in described["params"]] == list(signature), name
        for param in described["params"]:
            Draft202012Validator.check_schema(param["schema"])
            default = signature[param["name"]].default
            assert param["required"] is (default is inspect.Parameter.empty), (name, param)
        required = [p["name"] for p in described["params"] if p["required"]]
        if required:  # a call without them is refused before anything runs, naming them all
            answer = await rpc(admin, name, {})
            assert answer["error"]["code"] == INVALID_PARAMS, name
            assert answer["error"]["data"]["details"] == dict.fromkeys(required, "missing")
