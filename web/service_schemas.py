"""The OpenAPI schemas of the northbound services' routes (SNMP, MQTT, events, M-Bus slave,
licence, autoconfiguration); the document joins them to ``web/api_schemas.py``'s."""

from __future__ import annotations

from typing import Any

from mbusgw.web.api_schemas import BOOL, INT, STR, TIME, array, nullable, obj

SERVICE_SCHEMAS: dict[str, dict[str, Any]] = {
    "SnmpStatus": obj(
        ("enabled", "address", "requests", "refused", "receivers"),
        enabled=BOOL,
        address=nullable(STR),
        requests=INT,
        refused=INT,
        status=nullable(INT),
        receivers={
            "type": "object",
            "additionalProperties": obj(
                sent=INT, acknowledged=INT, failed=INT, last_error=nullable(STR)
            ),
        },
    ),
    "MqttStatus": obj(
        ("enabled", "connected", "published", "acknowledged", "dropped", "backlog"),
        enabled=BOOL,
        connected=BOOL,
        last_error=nullable(STR),
        published=INT,
        acknowledged=INT,
        dropped=INT,
        backlog=INT,
    ),
    "DlmsStatus": obj(
        ("enabled", "address", "associations", "associations_refused", "requests"),
        enabled=BOOL,
        address=nullable(STR),
        public_client=BOOL,
        lls_password_set=BOOL,
        connections=INT,
        accepted=INT,
        refused=INT,
        associations=INT,
        associations_refused=INT,
        requests=INT,
        errors=INT,
        closed_garbage=INT,
        closed_idle=INT,
        last_refusal=nullable(STR),
    ),
    "SnmpTestResult": obj(
        ("receivers", "ok"),
        receivers={"type": "object", "additionalProperties": BOOL},
        ok=BOOL,
    ),
    "EventList": obj(
        ("events", "last_id"),
        events=array(
            obj(
                ("id", "kind", "at", "meter", "detail"),
                id=INT,
                kind=STR,
                at=TIME,
                meter=nullable(STR),
                detail={"type": "object"},
            )
        ),
        last_id=INT,
    ),
    "SlaveStatus": obj(
        ("services",),
        services=array(
            obj(
                ("name", "enabled", "sessions_open", "sessions"),
                extra=True,  # a service adds its own: port, line, device, meters served
                name=STR,
                enabled=BOOL,
                sessions_open=INT,
                sessions=INT,
                sessions_refused=INT,
                frames_in=INT,
                frames_out=INT,
                bytes_in=INT,
                bytes_out=INT,
                refused_frames=INT,
                timeouts=INT,
            )
        ),
    ),
    "LicenceStatus": obj(
        ("device", "licence", "capacity"),
        device=STR,
        licence=nullable(
            obj(
                ("device", "licensee", "capacity", "features", "issued"),
                device=STR,
                licensee=STR,
                capacity=INT,
                features=array(STR),
                issued=STR,
            )
        ),
        problem=nullable(STR),
        capacity=INT,
    ),
    "AutoconfigStatus": obj(
        ("enabled", "result"),
        enabled=BOOL,
        url=STR,
        last_fetch=nullable(TIME),
        last_applied=nullable(TIME),
        next_fetch=nullable(TIME),
        result={"enum": ["never", "applied", "unchanged", "refused", "fetch_failed"], **STR},
        error=nullable(STR),
        applied_sha256=nullable(STR),
        changes=array(STR),
        refused=obj(extra=True),
    ),
}
