"""Delivery cursors, one record per report in the store's ``cursors`` table.

``{"meters": {meter: newest delivered reception time}, "until": …, "delivered_at": …}``. A
cursor is written only after the receiver accepted the report, with a durable commit; a crash
in between leaves the old cursor, so the same values are sent again (at least once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mbusgw.gateway.facade import REPORT_CURSORS as TABLE
from mbusgw.gateway.facade import Store, StoreWriter


@dataclass
class Cursor:
    meters: dict[str, int] = field(default_factory=dict)
    until: int | None = None  # the upper bound of the last delivered report
    delivered_at: float | None = None  # when the receiver accepted it (UTC seconds)

    def record(self) -> dict[str, object]:
        return {"meters": self.meters, "until": self.until, "delivered_at": self.delivered_at}


def load_cursor(store: Store, report: str) -> Cursor:
    """The report's cursor; a missing or unreadable record is an empty cursor (values are then
    sent again from the value period's start: a duplicate is better than a gap)."""
    record = store.record(TABLE, report)
    if not isinstance(record, dict):
        return Cursor()
    meters = record.get("meters")
    if not isinstance(meters, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in meters.items()
    ):
        return Cursor()
    until = record.get("until")
    delivered = record.get("delivered_at")
    return Cursor(
        dict(meters),
        until if isinstance(until, int) else None,
        float(delivered) if isinstance(delivered, int | float) else None,
    )


async def commit_cursor(writer: StoreWriter, report: str, cursor: Cursor) -> None:
    """Store the cursor durably (returns after the commit)."""
    await writer.put_record(TABLE, report, cursor.record())
