"""The wireless M-Bus key store as the API, JSON-RPC and the pages change it: list, add, import,
remove, link to a meter (``web`` is the ``WebState``, which holds the key store)."""

from __future__ import annotations

from typing import Any

from mbusgw.gateway.facade import GatewayHandle
from mbusgw.web.errors import BadRequest, Conflict, NotFound
from mbusgw.web.plain import find_meter


def key_listing(web: Any) -> dict[str, Any]:
    return web.keys.listing()


async def add_key(web: Any, entry: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise BadRequest("send the key as 32 hex digits in 'key'", {"key": "required"})
    unknown = set(entry) - {"key", "address", "manufacturer", "device_type", "version"}
    if unknown:
        raise BadRequest("unknown fields", {name: "unknown field" for name in unknown})
    await web.keys.add(
        entry["key"],
        address=entry.get("address"),
        manufacturer=entry.get("manufacturer"),
        device_type=entry.get("device_type"),
        version=entry.get("version"),
    )
    return key_listing(web)


async def import_keys(web: Any, data: bytes, filename: str, replace: bool) -> dict:
    added = await web.keys.import_file(data, filename or "keys.csv", replace_all=replace)
    return {"added": added}


async def remove_key(web: Any, entry_id: int) -> dict[str, Any]:
    try:
        await web.keys.remove(entry_id)
    except KeyError:
        raise NotFound(f"no key entry {entry_id}") from None
    return key_listing(web)


def meter_id_of(gw: GatewayHandle, key: str) -> Any:
    from mbusgw.core.wmbus import MeterId

    meter = find_meter(gw, key)
    if not meter.secondary_address:
        raise BadRequest("only meters with a secondary address can have a linked key")
    if meter.manufacturer is None or meter.version is None or meter.medium is None:
        raise Conflict(
            "the meter's manufacturer, version and medium are learnt from its first reply; "
            "read it once, or add the key with its address as the match criterion"
        )
    return MeterId(meter.manufacturer, meter.secondary_address, meter.version, meter.medium)


async def link_key(web: Any, key: str, aes_key: str) -> dict[str, Any]:
    if not isinstance(aes_key, str):
        raise BadRequest("send the key as 32 hex digits in 'key'", {"key": "required"})
    await web.keys.link(meter_id_of(web.gateway, key), aes_key)
    return key_listing(web)


async def unlink_key(web: Any, key: str) -> dict[str, Any]:
    await web.keys.unlink(meter_id_of(web.gateway, key))
    return key_listing(web)
