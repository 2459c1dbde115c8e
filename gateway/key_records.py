"""The key store in the store's ``keys`` table: one record per entry and per link, and one for
the id counter. A change rewrites the table in one transaction through the store writer, so the
table always holds one whole snapshot.

This is the only place key material is written out (``material_for_storage``): into the store
file, which keeps it sealed under its key file (``gateway/store/sealing.py``). Configuration
files never hold keys; a backup holds them only when asked, sealed with a passphrase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mbusgw.core.crypto import make_key
from mbusgw.core.errors import EncodeError
from mbusgw.core.wmbus import MeterId
from mbusgw.gateway.keys import Key, KeyEntry, KeySnapshot
from mbusgw.gateway.store.records import replace_records

TABLE = "keys"
STATE = "state"
FORMAT = 1

Report = Callable[[str], None]


def entry_name(entry: KeyEntry) -> str:
    return f"entry:{entry.id:08d}"


def link_name(meter: MeterId) -> str:
    return f"link:{meter.manufacturer}:{meter.id}:{meter.version}:{meter.device_type}"


def snapshot_records(snapshot: KeySnapshot) -> dict[str, dict[str, Any]]:
    """The table's records for ``snapshot`` (key material in hex: this goes to the store)."""
    records: dict[str, dict[str, Any]] = {STATE: {"format": FORMAT, "next_id": snapshot.next_id}}
    for entry in snapshot.entries:
        records[entry_name(entry)] = {
            "id": entry.id,
            "key": entry.key.material_for_storage(),
            "address": entry.address,
            "manufacturer": entry.manufacturer,
            "device_type": entry.device_type,
            "version": entry.version,
            "source": entry.source,
        }
    for meter, key in snapshot.links:
        records[link_name(meter)] = {"meter": meter.to_dict(), "key": key.material_for_storage()}
    return records


def _key(record: dict[str, Any]) -> Key:
    material = record.get("key")
    if not isinstance(material, str):
        raise ValueError("no key")
    try:
        return make_key(material)
    except EncodeError:
        raise ValueError("the key is not 16 or 32 hex digits") from None


def _entry(record: dict[str, Any]) -> KeyEntry:
    def optional(name: str, kind: type) -> Any:
        value = record.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ValueError(f"{name} is not {kind.__name__}")
        return value

    entry_id = optional("id", int)
    if not entry_id or entry_id < 1:
        raise ValueError("no entry id")
    return KeyEntry(
        key=_key(record),
        address=optional("address", str),
        manufacturer=optional("manufacturer", str),
        device_type=optional("device_type", int),
        version=optional("version", int),
        source=str(record.get("source", "")),
        id=entry_id,
    )


def _link(record: dict[str, Any]) -> tuple[MeterId, Key]:
    meter = record.get("meter")
    if not isinstance(meter, dict):
        raise ValueError("no meter")
    try:
        meter_id = MeterId(
            str(meter["manufacturer"]),
            str(meter["id"]),
            int(meter["version"]),
            int(meter["device_type"]),
        )
    except (KeyError, TypeError, ValueError):
        raise ValueError("the meter address is incomplete") from None
    return meter_id, _key(record)


def snapshot_from_records(records: dict[str, object], report: Report) -> KeySnapshot:
    """The snapshot a table holds; a damaged record is reported by name (never its key) and
    left out, so one bad record does not cost the others."""
    entries: list[KeyEntry] = []
    links: list[tuple[MeterId, Key]] = []
    next_id = 1
    for name, record in sorted(records.items()):
        try:
            if not isinstance(record, dict):
                raise ValueError("not a record")
            if name == STATE:
                next_id = max(next_id, int(record.get("next_id", 1)))
            elif name.startswith("entry:"):
                entries.append(_entry(record))
            elif name.startswith("link:"):
                links.append(_link(record))
            else:
                raise ValueError("unknown kind of record")
        except (ValueError, TypeError) as error:
            report(f"key store record {name!r} left out: {error}")
    entries.sort(key=lambda entry: entry.id)
    next_id = max([next_id, *(entry.id + 1 for entry in entries)])
    return KeySnapshot(tuple(entries), tuple(links), next_id)


class StoreKeyBackend:
    """The gateway's key backend: loads from the store, saves through its writer (the call
    returns once the change is on disk)."""

    def __init__(self, store: Any, writer: Any, report: Report) -> None:
        self._store = store
        self._writer = writer
        self._report = report

    def load(self) -> KeySnapshot:
        return snapshot_from_records(self._store.records(TABLE), self._report)

    async def save(self, snapshot: KeySnapshot) -> None:
        records = snapshot_records(snapshot)
        await self._writer.submit(lambda ctx: replace_records(ctx, TABLE, records))
