"""What every rendered report knows about itself: identity, conventions, window, meters.

Also the pieces several layouts share: the preamble of the CSV layouts and the columns of the
wide layouts (one column per quantity, the same quantity of different meters in one column).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mbusgw.core.units import medium_name
from mbusgw.gateway.services.reports.conventions import Conventions
from mbusgw.gateway.services.reports.selection import Window
from mbusgw.gateway.store.model import SeriesInfo


@dataclass(frozen=True)
class MeterIdentity:
    """What the installation knows about a meter beyond its key (all optional)."""

    position: str = ""
    secondary_address: str = ""
    manufacturer: str = ""
    medium: str = ""
    version: int | None = None

    @classmethod
    def of(cls, meter: object) -> MeterIdentity:
        """From an installed ``mbusgw.gateway.meters.Meter``."""
        medium = getattr(meter, "medium", None)
        return cls(
            getattr(meter, "position", "") or "",
            getattr(meter, "secondary_address", "") or "",
            getattr(meter, "manufacturer", "") or "",
            medium_name(medium) if medium is not None else "",
            getattr(meter, "version", None),
        )


NO_IDENTITY = MeterIdentity()


@dataclass(frozen=True)
class ReportContext:
    name: str
    template: int
    device: str
    contact: str
    conventions: Conventions
    generated: int  # UTC seconds
    window: Window
    meters: Mapping[str, MeterIdentity] = field(default_factory=dict)
    test: bool = False

    def identity(self, meter: str) -> MeterIdentity:
        return self.meters.get(meter, NO_IDENTITY)

    def preamble(self) -> list[list[str]]:
        """Key/value lines that open every CSV layout (their first cell starts with '#')."""
        c = self.conventions
        rows = [
            [c.heading("device"), self.device],
            [c.heading("contact"), self.contact],
            [c.heading("report"), self.name, str(self.template)],
            [c.heading("from"), c.time(self.window.lower)],
            [c.heading("until"), c.time(self.window.until)],
            [c.heading("generated"), c.time(self.generated)],
        ]
        if self.test:
            rows.append([c.heading("test")])
        return [["#" + row[0], *row[1:]] for row in rows]

    @property
    def stamp(self) -> str:
        return dt.datetime.fromtimestamp(self.generated, dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def series_label(info: SeriesInfo) -> str:
    label = info.quantity
    if info.unit:
        label += f" [{info.unit}]"
    if info.description:
        label += f" ({info.description})"
    return label


class WideColumns:
    """Column numbers of the wide layouts: one per distinct label, in order of appearance.

    Two series of one meter with the same label (a repeated record) get "#2", "#3" ...
    """

    def __init__(self, series_of: Mapping[str, Iterable[SeriesInfo]], meters: Iterable[str]):
        self.labels: list[str] = []
        index: dict[str, int] = {}
        self.column: dict[int, int] = {}  # series id -> column (0-based, after the fixed ones)
        for meter in meters:
            seen: dict[str, int] = {}
            for info in sorted(series_of.get(meter, ()), key=lambda s: s.id):
                label = series_label(info)
                seen[label] = seen.get(label, 0) + 1
                if seen[label] > 1:
                    label = f"{label} #{seen[label]}"
                if label not in index:
                    index[label] = len(self.labels)
                    self.labels.append(label)
                self.column[info.id] = index[label]

    def __len__(self) -> int:
        return len(self.labels)
