"""The gateway's events over REST: ``GET /api/v1/events`` (the kept history, filtered) and
``GET /api/v1/events/stream`` (Server-Sent Events: the history after ``Last-Event-ID`` or
``after``, then each event as it happens). An event's ``id`` is its number in the history, so a
client that reconnects with ``Last-Event-ID`` misses nothing that is still kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import trio
from quart import Response, request

from mbusgw.core.jsonout import dumps
from mbusgw.gateway.events import KINDS, NOT_KEPT, Event, EventBus
from mbusgw.web.api_schemas import INT, STR
from mbusgw.web.errors import BadRequest
from mbusgw.web.openapi import Param
from mbusgw.web.params import arg_int, arg_time
from mbusgw.web.routes import SINCE, UNTIL, gw, reply, route

SHOWN_KINDS = tuple(kind for kind in KINDS if kind not in NOT_KEPT)
MAX_EVENTS = 10_000
KEEPALIVE_S = 15.0  # a comment line now and then keeps proxies from closing an idle stream

KIND = Param("kind", STR, f"only these kinds (comma-separated): {', '.join(SHOWN_KINDS)}")
METER = Param("meter", STR, "only this meter's events (its key)")
AFTER = Param("after", INT, "only events numbered above this id")


class EventFilter:
    """The query's filters, checked before anything is read."""

    def __init__(self) -> None:
        kinds = request.args.get("kind", "")
        self.kinds = {k.strip() for k in kinds.split(",") if k.strip()} or set(SHOWN_KINDS)
        unknown = sorted(self.kinds - set(SHOWN_KINDS))
        if unknown:
            raise BadRequest(
                f"unknown event kind {', '.join(unknown)}; known: {', '.join(SHOWN_KINDS)}",
                {"kind": "unknown"},
            )
        self.meter = request.args.get("meter") or None
        self.since = arg_time("since")
        self.until = arg_time("until", end_of_day=True)

    def accepts(self, event: Event) -> bool:
        if event.kind not in self.kinds:
            return False
        if self.meter is not None and event.meter_key != self.meter:
            return False
        at = event.at.timestamp()
        if self.since is not None and at < self.since:
            return False
        return self.until is None or at < self.until


def event_dict(number: int, event: Event) -> dict[str, Any]:
    at = event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)
    return {
        "id": number,
        "kind": event.kind,
        "at": at.isoformat(),
        "meter": event.meter_key,
        "detail": event.detail,
    }


@route("GET", "/events", "The gateway's recent events, oldest first", "events",
       params=(KIND, METER, SINCE, UNTIL, AFTER,
               Param("limit", INT, f"at most this many, the newest (1-{MAX_EVENTS})")),
       response="EventList")  # fmt: skip
async def events_history() -> Response:
    chosen = EventFilter()
    after = arg_int("after", 0)
    limit = arg_int("limit", 1000, 1, MAX_EVENTS)
    bus = gw().events
    found = [event_dict(n, e) for n, e in bus.history(after or 0) if chosen.accepts(e)]
    return reply({"events": found[-(limit or 1) :], "last_id": bus.last_id})


@route("GET", "/events/stream",
       "Live events as Server-Sent Events (after the history past Last-Event-ID or after)",
       "events", params=(KIND, METER, AFTER), media="event-stream")  # fmt: skip
async def events_stream() -> Response:
    chosen = EventFilter()
    resume = request.headers.get("Last-Event-ID", "").strip()
    if resume:
        if not resume.isdigit():
            raise BadRequest("Last-Event-ID must be an event id", {"Last-Event-ID": "not a number"})
        after = int(resume)
    else:
        after = arg_int("after", None)
    bus = gw().events
    # subscribed before the history is read: nothing falls between the two
    receive = bus.subscribe()
    start = bus.last_id if after is None else after
    response = Response(_stream(bus, receive, chosen, start), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    response.timeout = None  # a stream has no end
    return response


def _message(number: int, event: Event) -> bytes:
    data = dumps(event_dict(number, event))
    return f"id: {number}\nevent: {event.kind}\ndata: {data}\n\n".encode()


async def _stream(
    bus: EventBus, receive: trio.MemoryReceiveChannel[Event], chosen: EventFilter, after: int
) -> AsyncIterator[bytes]:
    with receive:
        yield f": events after {after}, {datetime.now(UTC).isoformat()}\n\n".encode()
        sent = after
        for number, event in bus.history(after):
            if chosen.accepts(event):
                yield _message(number, event)
            sent = number
        while True:
            event = None
            with trio.move_on_after(KEEPALIVE_S):
                event = await receive.receive()
            if event is None:
                yield b": keepalive\n\n"
                continue
            number = bus.number_of(event)
            if number is None or number <= sent:
                continue  # not kept (internal) or already sent from the history
            sent = number
            if chosen.accepts(event):
                yield _message(number, event)
