"""The schemas of the OpenAPI document of ``/api/v1`` (``web/openapi.py`` builds it): one place
for each, named as the routes of ``web/api_v1.py`` name them.

The settings schemas are generated from the typed ``Settings`` dataclasses (their bounds and
choices), so a new setting is documented the day it is added.
"""

from __future__ import annotations

import types
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from mbusgw.gateway.settings import Settings


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def obj(required: tuple[str, ...] = (), extra: bool = False, **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    if not extra:
        schema["additionalProperties"] = False
    return schema


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
ANY_VALUE: dict[str, Any] = {}  # a meter value: number, text, date … exactly as the meter sent it
METER_KEY = {"type": "string", "minLength": 1, "maxLength": 64}


def settings_schema(cls: type, partial: bool) -> dict[str, Any]:
    """JSON Schema of a settings dataclass (``partial``: every field optional, for changes)."""
    hints = get_type_hints(cls)
    props = {}
    for f in fields(cls):
        props[f.name] = _field_schema(hints[f.name], f.metadata, partial)
        if f.default is not MISSING and not is_dataclass(hints[f.name]):
            props[f.name]["default"] = f.default
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if not partial:
        schema["required"] = [f.name for f in fields(cls)]
    return schema


def _field_schema(kind: Any, meta: Any, partial: bool) -> dict[str, Any]:
    if is_dataclass(kind):
        return settings_schema(kind, partial)
    origin = get_origin(kind)
    if origin is dict:
        entry = settings_schema(get_args(kind)[1], partial)
        if partial:  # a change may remove an entry
            entry = {"anyOf": [entry, {"type": "null", "description": "removes the entry"}]}
        return {
            "type": "object",
            "additionalProperties": entry,
            "propertyNames": {"pattern": meta["key"].pattern},
        }
    if origin in (Union, types.UnionType):
        kind = next(a for a in get_args(kind) if a is not type(None))
    schema: dict[str, Any]
    if kind is bool:
        schema = {"type": "boolean"}
    elif kind is int:
        schema = {"type": "integer"}
        if meta.get("min") is not None:
            schema["minimum"] = meta["min"]
        if meta.get("max") is not None:
            schema["maximum"] = meta["max"]
    else:
        schema = {"type": "string"}
        if "max_length" in meta:
            schema["maxLength"] = meta["max_length"]
    if meta.get("choices"):
        schema["enum"] = list(meta["choices"])
    if meta.get("note"):
        schema["description"] = meta["note"]
    return schema


HEALTH = obj(
    status={"type": "string", "enum": ["ok", "failed", "never"]},
    readings=INT,
    failures=INT,
    success_rate=nullable(NUM),
    last_attempt=nullable(TIME),
    last_good=nullable(TIME),
    last_error=nullable(STR),
    last_retries=INT,
    last_response_ms=nullable(NUM),
)

VALUE = obj(
    ("series", "quantity", "unit", "value"),
    series=INT,
    signature=STR,
    quantity=STR,
    unit=STR,
    description=STR,
    value=ANY_VALUE,
    read_at=TIME,
    meter_time=nullable(TIME),
    invalid={
        "type": "boolean",
        "const": True,
        "description": (
            "present when the value is invalid: the meter flagged it, or its record carries an "
            "error (EN 13757-3 table 17); the same values read as no value over Modbus"
        ),
    },
)

METER = obj(
    ("key", "position", "state"),
    key=METER_KEY,
    position=STR,
    secondary_address=nullable(STR),
    primary_address=nullable(INT),
    enhanced_address=nullable(STR),
    baud={"type": "integer", "enum": [300, 2400, 9600]},
    addressing=array({"type": "string", "enum": ["primary", "secondary", "esecondary"]}),
    interface=STR,
    state={"type": "string", "enum": ["active", "passive"]},
    enabled=BOOL,
    multi_telegram={"type": "string", "enum": ["off", "auto"]},
    multi_telegram_limit=INT,
    key_linked=BOOL,
    manufacturer=nullable(STR),
    version=nullable(INT),
    medium=nullable(INT),
    timing={"type": "object", "additionalProperties": NUM},
    wireless=BOOL,
    modbus_enabled=BOOL,
    health=HEALTH,
    latest=nullable(
        obj(read_at=TIME, values=array(ref("Value")), meter_time=nullable(TIME), extra=True)
    ),
)

METER_CHANGE = obj(
    position={"type": "string", "maxLength": 128},
    enabled=BOOL,
    baud={"type": "integer", "enum": [300, 2400, 9600]},
    addressing=array({"type": "string", "enum": ["primary", "secondary", "esecondary"]}),
    primary_address=nullable({"type": "integer", "minimum": 0, "maximum": 250}),
    interface={"type": "string", "minLength": 1, "maxLength": 64},
    multi_telegram={"type": "string", "enum": ["off", "auto"]},
    multi_telegram_limit={"type": "integer", "minimum": 1, "maximum": 64},
    timing={"type": "object", "additionalProperties": NUM},
)

SERVICE = obj(
    name=STR,
    state=STR,
    restarts=INT,
    crashes=INT,
    last_error=nullable(STR),
)

JOB = obj(
    ("id", "kind", "state"),
    id=STR,
    kind=STR,
    state={"type": "string", "enum": ["queued", "running", "done", "failed", "cancelled"]},
    progress=NUM,
    message=STR,
    found=INT,
    expected=nullable(INT),
    warning=nullable(STR),
    started=nullable(TIME),
    finished=nullable(TIME),
    result=nullable({"type": "object"}),
    eta_s=nullable(NUM),
    lines=nullable(
        array(
            obj(
                ("interface", "state", "done"),
                interface=STR,
                state={"type": "string", "enum": ["waiting", "scanning", "done", "stopped"]},
                baud=INT,
                bauds=array(INT),
                done=NUM,
                eta_s=nullable(NUM),
                found=INT,
                probes=INT,
                current=STR,
            )
        )
    ),
    extra=True,
)

CERTIFICATE = obj(
    subject=STR,
    issuer=STR,
    not_before=TIME,
    not_after=TIME,
    serial=STR,
    sha256=STR,
    self_signed=BOOL,
)

USER = obj(
    ("name", "role"),
    name=STR,
    role={"type": "string", "enum": ["admin", "read-only"]},
    must_change_password=BOOL,
    created=STR,
    tokens=array(obj(id=STR, label=STR, created=STR)),
)

LOG_ENTRY = obj(
    ("time", "level", "origin", "text"),
    time=TIME,
    level={"type": "integer", "minimum": -1, "maximum": 2},
    level_name=STR,
    origin=STR,
    text=STR,
)

METER_LOG_ENTRY = obj(
    ("read_at", "status"),
    read_at=TIME,
    status=STR,
    meter_time=nullable(TIME),
    duration_ms=INT,
    retries=INT,
    status_byte=nullable(INT),
    error=STR,
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": obj(
        ("error",),
        error=obj(
            ("code", "message"),
            code=STR,
            message=STR,
            details={},
        ),
    ),
    "Ok": obj(("ok",), ok=BOOL, message=STR),
    "DeviceInfo": obj(
        ("name", "version"),
        name=STR,
        contact=STR,
        version=STR,
        hostname=STR,
        now=TIME,
        started_at=TIME,
        uptime_s=NUM,
        timezone=STR,
        capacity=INT,
        python=STR,
        addresses=array(obj(interface=STR, address=STR, family=STR)),
    ),
    "DeviceStatus": obj(
        ("status",),
        status={"type": "string", "enum": ["ok", "warning", "error"]},
        meters=obj(installed=INT, active=INT, passive=INT, ok=INT, failed=INT, never=INT),
        services=array(SERVICE),
        store=nullable({"type": "object"}),
        continuous=BOOL,
    ),
    "Health": HEALTH,
    "Value": VALUE,
    "Meter": METER,
    "MeterList": obj(
        ("meters", "total"),
        meters=array(ref("Meter")),
        total=INT,
        active=INT,
        passive=INT,
        capacity=INT,
        offset=INT,
        count={"type": "integer", "description": "meters that match (all pages)"},
    ),
    "MeterChange": METER_CHANGE,
    "InstallResult": obj(
        ("installed",),
        installed=INT,
        active=INT,
        passive=INT,
        meters=array(ref("Meter")),
        over_capacity=array(STR),
        warning=nullable(STR),
    ),
    "MeterListText": obj(("csv",), csv={"type": "string", "maxLength": 4_000_000}),
    "ReadResult": obj(
        ("meter", "ok"),
        meter=STR,
        ok=BOOL,
        read_at=nullable(TIME),
        error=nullable(STR),
        values=array(ref("Value")),
    ),
    "LatestValues": obj(
        ("meters",),
        meters=array(
            obj(
                ("key", "values"),
                key=STR,
                position=STR,
                read_at=nullable(TIME),
                values=array(ref("Value")),
            )
        ),
    ),
    "SeriesList": obj(
        ("meter", "series"),
        meter=STR,
        series=array(
            obj(id=INT, signature=STR, quantity=STR, unit=STR, description=STR, numeric=BOOL)
        ),
    ),
    "SeriesValues": obj(
        ("meter", "series", "times", "values"),
        meter=STR,
        series=obj(id=INT, signature=STR, quantity=STR, unit=STR, description=STR),
        since=nullable(TIME),
        until=nullable(TIME),
        times=array(INT),
        values=array(ANY_VALUE),
        next=nullable(STR),
    ),
    "LiveSnapshot": obj(
        ("meters",),
        continuous=BOOL,
        version=INT,
        meters=array(
            obj(
                ("key", "ok"),
                key=STR,
                ok=BOOL,
                read_at=TIME,
                age_s=NUM,
                error=nullable(STR),
                values=array(ref("Value")),
            )
        ),
    ),
    "MeterLog": obj(("meter", "entries"), meter=STR, entries=array(METER_LOG_ENTRY)),
    "SystemLog": obj(("entries",), entries=array(LOG_ENTRY), truncated=BOOL),
    "Job": JOB,
    "ReportList": obj(
        ("reports",),
        reports=array(
            obj(
                ("name", "status"),
                name=STR,
                kind=STR,
                template=INT,
                protocol=STR,
                enabled=BOOL,
                target=STR,
                state=STR,
                status=INT,
                next_run=nullable(TIME),
                last_attempt=nullable(TIME),
                last_success=nullable(TIME),
                last_error=nullable(STR),
                last_reply=nullable(STR),
                values_pending=nullable(INT),
                values_delivered=INT,
                delivered_until=nullable(TIME),
                attempts=INT,
                failures=INT,
            )
        ),
    ),
    "ReportOutcome": obj(("ok", "values"), ok=BOOL, values=INT, reply=STR, error=STR),
    "JobList": obj(("jobs",), jobs=array(ref("Job"))),
    "ScanRequest": obj(
        kind={"type": "string", "enum": ["primary", "secondary", "wireless"]},
        interfaces=array(STR),
        baud={"type": "integer", "enum": [300, 2400, 9600]},
        expected={
            "type": "integer",
            "minimum": 0,
            "maximum": 4096,
            "description": "meters to find (0 = unknown): the search stops once that many are "
            "found, and warns when it ends with fewer",
        },
        addressing=array({"type": "string", "enum": ["primary", "secondary", "esecondary"]}),
        install=BOOL,
        duration_s={"type": "integer", "minimum": 1, "maximum": 3600},
    ),
    "ReinstallResult": obj(
        ("meters", "moved", "not_heard"),
        meters=INT,
        moved=array(
            obj(
                ("meter", "new"),
                meter=STR,
                old=nullable(STR),
                new=STR,
                old_rssi=nullable(NUM),
                new_rssi=NUM,
            )
        ),
        not_heard=array(STR),
    ),
    "WirelessStatus": obj(
        ("configured", "receivers", "heard"),
        configured=BOOL,
        simulated=BOOL,
        receivers=array(
            obj(
                ("name", "kind", "state"),
                name=STR,
                kind=STR,
                link_mode=STR,
                state=STR,
                frames=INT,
                last_frame=nullable(TIME),
                last_error=nullable(STR),
            )
        ),
        stats={"type": "object", "additionalProperties": INT},
        unattributed={"type": "object", "additionalProperties": INT},
        heard=array(
            obj(
                ("meter", "key", "installed", "status"),
                meter=obj(manufacturer=STR, id=STR, version=INT, device_type=INT),
                key=STR,
                installed=BOOL,
                status=STR,
                counts={"type": "object", "additionalProperties": INT},
                last_heard=nullable(TIME),
                rssi={"type": "object", "additionalProperties": NUM},
                best_receiver=nullable(STR),
            )
        ),
    ),
    "Settings": settings_schema(Settings, partial=False),
    "SettingsChange": settings_schema(Settings, partial=True),
    "KeyListing": obj(
        ("entries", "links"),
        entries=array(
            obj(
                id=INT,
                address=nullable(STR),
                manufacturer=nullable(STR),
                device_type=nullable(INT),
                version=nullable(INT),
                key=STR,
                source=STR,
            )
        ),
        links=array(obj(meter={"type": "object"}, key=STR)),
    ),
    "KeyEntry": obj(
        ("key",),
        key={"type": "string", "maxLength": 64},
        address=nullable({"type": ["string", "integer"]}),
        manufacturer=nullable(STR),
        device_type=nullable({"type": ["integer", "string"]}),
        version=nullable({"type": ["integer", "string"]}),
    ),
    "KeyLink": obj(("key",), key={"type": "string", "maxLength": 64}),
    "KeyImport": obj(("added",), added=INT),
    "User": USER,
    "UserList": obj(("users",), users=array(ref("User"))),
    "NewUser": obj(
        ("name", "password", "role"),
        name={"type": "string", "maxLength": 64},
        password={"type": "string", "maxLength": 256},
        role={"type": "string", "enum": ["admin", "read-only"]},
    ),
    "UserChange": obj(
        password={"type": "string", "maxLength": 256},
        role={"type": "string", "enum": ["admin", "read-only"]},
    ),
    "PasswordChange": obj(
        ("current_password", "new_password"),
        current_password={"type": "string", "maxLength": 256},
        new_password={"type": "string", "maxLength": 256},
        new_username={"type": "string", "maxLength": 64},
    ),
    "NewToken": obj(("label",), label={"type": "string", "maxLength": 64}),
    "Token": obj(("token",), token=STR, warning=STR),
    "TlsStatus": obj(
        ("settings",),
        settings=obj(
            https=BOOL,
            https_port={"type": "integer", "minimum": 0, "maximum": 65535},
            client_certificates={"type": "string", "enum": ["off", "required"]},
            redirect_http=BOOL,
        ),
        certificate=nullable(CERTIFICATE),
        trust_store=array(CERTIFICATE),
    ),
    "TlsSettingsChange": obj(
        https=BOOL,
        https_port={"type": "integer", "minimum": 0, "maximum": 65535},
        client_certificates={"type": "string", "enum": ["off", "required"]},
        redirect_http=BOOL,
    ),
    "Certificate": CERTIFICATE,
    "SelfSigned": obj(hostname={"type": "string", "maxLength": 64}),
    "OpenApi": {"type": "object", "required": ["openapi", "info", "paths"]},
    "FrameHex": obj(("hex",), hex={"type": "string", "maxLength": 2048}),
}
