"""The report templates, protocols, value intervals and event kinds, as data.

Template numbers follow the product: the first digit is the protocol (1 e-mail, 2 FTP, 3 HTTP),
the last three digits the layout, so 1101, 2101 and 3101 carry the same content. This module
is plain data without imports of the rest of the gateway, so the settings can check against it.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = {1: "email", 2: "ftp", 3: "http"}


@dataclass(frozen=True)
class Layout:
    """One report layout: what it contains and how it is shipped."""

    number: int  # the last three digits of the template number
    name: str
    kind: str  # "values" (scheduled and on-demand reports) or "events" (event reports)
    extension: str
    content_type: str
    summary: str


CSV = "text/csv; charset=utf-8"
LAYOUTS = {
    layout.number: layout
    for layout in (
        Layout(101, "values", "values", ".csv", CSV, "all values, one record per value (CSV)"),
        Layout(
            102, "readings", "values", ".csv", CSV, "one row per reading, a column per quantity"
        ),
        Layout(
            112,
            "workbook",
            "values",
            ".xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "Excel workbook: a summary sheet and one row per reading",
        ),
        Layout(120, "latest", "values", ".csv", CSV, "one row per meter with its latest values"),
        Layout(130, "json", "values", ".json", "application/json", "values with units and meters"),
        Layout(140, "telegrams", "values", ".csv", CSV, "raw telegrams in hex, one per row"),
        Layout(201, "events", "events", ".csv", CSV, "events, one row per event (CSV)"),
        Layout(230, "events-json", "events", ".json", "application/json", "events as JSON"),
    )
}
TEMPLATES = tuple(sorted(p * 1000 + n for p in PROTOCOLS for n in LAYOUTS))

REPORT_KINDS = ("scheduled", "event", "on_demand")

# value interval → bucket (fixed seconds, or a calendar unit in the gateway's time zone)
VALUE_INTERVALS = {
    "all": None,
    "15min": 900,
    "30min": 1800,
    "hour": 3600,
    "day": "day",
    "week": "week",
    "month": "month",
}

# what event reports can be sent for (the names are those of ``mbusgw.gateway.events``)
EVENT_KINDS = (
    "device_started",
    "meter_failed",
    "meter_recovered",
    "meter_not_seen",
    "report_failed",
)


def protocol_of(template: int) -> str:
    return PROTOCOLS[template // 1000]


def layout_of(template: int) -> Layout:
    return LAYOUTS[template % 1000]


def template_problem(template: int) -> str | None:
    """Why ``template`` is not a template number, or None."""
    if template not in TEMPLATES:
        return f"unknown template {template}; there are {', '.join(map(str, TEMPLATES))}"
    return None
