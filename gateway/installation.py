"""The installed meter list in the store: loading it, and replacing it in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mbusgw.gateway.meters import Meter, apply_capacity, meter_from_record, meter_to_record
from mbusgw.gateway.store import Store
from mbusgw.gateway.store.records import delete_record, put_record

TABLE = "installation"


def load_meters(store: Store) -> list[Meter]:
    """The meters in list order, with the capacity applied."""
    records = sorted(store.records(TABLE).values(), key=lambda record: record["order"])
    return apply_capacity([meter_from_record(r) for r in records], store.settings.capacity)


def replace_meters(meters: list[Meter], gone: Iterable[str]) -> Callable[[Any], None]:
    """A store operation that writes ``meters`` (keeping their order) and deletes ``gone``."""
    gone = list(gone)

    def write(ctx: Any) -> None:
        for order, meter in enumerate(meters):
            put_record(ctx, TABLE, meter.key, {**meter_to_record(meter), "order": order})
        for key in gone:
            delete_record(ctx, TABLE, key)

    return write
