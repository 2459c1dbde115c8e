"""Reading request arguments: every bad value is a ``BadRequest`` naming the argument."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from quart import request

from mbusgw.web.errors import BadRequest


def parse_time(text: str, name: str, *, end_of_day: bool = False, zone: tzinfo = UTC) -> float:
    """ISO 8601 (in ``zone``, UTC unless told otherwise, when it has no offset) or seconds since
    the epoch; a bare date as the end of a range includes that whole day."""
    text = text.strip()
    try:
        return float(int(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{name} is not a time", {name: "ISO 8601 (2024-05-01T12:00Z) or epoch seconds"}
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    if end_of_day and len(text) == 10:
        moment += timedelta(days=1)
    return moment.timestamp()


def arg_time(name: str, *, end_of_day: bool = False, zone: tzinfo = UTC) -> float | None:
    text = request.args.get(name)
    return parse_time(text, name, end_of_day=end_of_day, zone=zone) if text else None


def arg_int(name: str, default: int | None = None, low: int = 0, high: int = 2**31) -> int | None:
    text = request.args.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number", {name: "not a number"}) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be {low}-{high}", {name: "out of range"})
    return value


def arg_bool(name: str, default: bool = False) -> bool:
    text = request.args.get(name)
    if text is None or text == "":
        return default
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"{name} must be true or false", {name: "not a boolean"})


def arg_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = request.args.get(name) or default
    if value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}", {name: "unknown"})
    return value


async def json_body(kind: type = dict) -> Any:
    raw = await request.get_data(as_text=False)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, kind):
        raise BadRequest(f"the request body must be a JSON {kind.__name__}")
    return data


async def uploaded_file(field: str = "file") -> tuple[bytes, str]:
    """A file from a multipart form, or the raw body of any other content type."""
    if request.mimetype == "multipart/form-data":
        files = await request.files
        upload = files.get(field)
        if upload is None:
            raise BadRequest(f"no file in the form field {field!r}", {field: "required"})
        return upload.read(), upload.filename or ""
    data = await request.get_data(as_text=False)
    if not data:
        raise BadRequest("the request has no file", {field: "required"})
    return data, request.args.get("filename", "")


async def form_value(name: str) -> Any:
    return (await request.form).get(name)


def text_of(data: bytes, name: str = "file") -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            raise BadRequest("the file is not text", {name: "not UTF-8 text"}) from None


def query_filters(zone: tzinfo = UTC) -> dict[str, Any]:
    """The system log filters shared by the API and the page (whose dates are days in the
    gateway's time zone, as the page shows its times)."""
    return {
        "since": arg_time("since", zone=zone),
        "until": arg_time("until", end_of_day=True, zone=zone),
        "min_level": arg_int("min_level", None, -1, 2),
        "max_level": arg_int("max_level", None, -1, 2),
        "origin": request.args.get("origin") or None,
    }
