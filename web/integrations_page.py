"""The Integrations page: the SNMP agent (where it listens, its receivers, the MIB to download,
the test notification), the MQTT publisher (connection, counts, backlog) and the metrics, each
with its settings as a form made from the settings model (``web/settings_form.py``), in the
style of the Modbus and report pages; a page per SNMP notification receiver (add, edit,
delete); the DLMS/COSEM server's state and counters. Every form goes the API's way
(``update_settings``): all of it is stored or nothing, each refusal shown at its input;
passwords, the community and the client key are shown masked and kept when sent back so."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quart import Blueprint, Response, g, request

from mbusgw.gateway.facade import MIB_NAME
from mbusgw.gateway.metrics_settings import MetricsSettings
from mbusgw.gateway.mqtt_settings import MqttSettings
from mbusgw.gateway.settings import without_masks
from mbusgw.gateway.snmp_settings import RECEIVER_NAME, SnmpReceiver, SnmpSettings
from mbusgw.web.auth import admin_only
from mbusgw.web.dlms_api import dlms_status
from mbusgw.web.entry_forms import NamedEntries, as_submitted, refusal, retyped_passwords
from mbusgw.web.errors import Forbidden, NotFound
from mbusgw.web.pages import attempt, back, page
from mbusgw.web.routes import gw
from mbusgw.web.settings_form import changes_from_form, field_errors, form_fields

blueprint = Blueprint("integrations_page", __name__)

SECTIONS: dict[str, type] = {"snmp": SnmpSettings, "mqtt": MqttSettings, "metrics": MetricsSettings}
TITLES = {"snmp": "SNMP", "mqtt": "MQTT", "metrics": "Metrics"}
HERE = "integrations_page.integrations"


@blueprint.route("/integrations", methods=["GET", "POST"])
async def integrations() -> Any:
    gateway = gw()
    problem = None
    if request.method == "POST":
        if not g.user.is_admin:
            raise Forbidden("only an administrator can send the test notification")
        if gateway.snmp is not None:
            results, problem = await attempt(gateway.snmp.send_test)
            if problem is None:
                got = ", ".join(
                    f"{name}: {'ok' if ok else 'failed'}" for name, ok in results.items()
                )
                return back(HERE, f"Test notification sent ({got})")
    html = await render_page(error=problem)
    return html, 400 if problem is not None else 200


@blueprint.post("/integrations/<section>")
@admin_only
async def section_settings(section: str) -> Any:
    """One service's settings form: stored whole, or shown again with its problems."""
    cls = SECTIONS.get(section)
    if cls is None:
        raise NotFound(f"no settings section {section!r} on this page")
    stored = getattr(gw().settings, section)
    changes, errors = changes_from_form(cls, await request.form)
    others: dict[str, str] = {}
    if not errors:
        change = without_masks({section: changes})
        _, problem = await attempt(lambda: gw().update_settings(change))
        if problem is None:
            return back(HERE, f"{TITLES[section]} settings saved")
        errors, others = field_errors(problem.details, f"{section}.", form_fields(cls, stored))
    errors |= retyped_passwords(form_fields(cls, stored), changes)
    html = await render_page(
        refused=section,
        shown=as_submitted(stored, changes),
        errors=errors,
        error=refusal(errors, others),
    )
    return html, 400


async def render_page(
    *,
    refused: str | None = None,
    shown: Any = None,
    errors: Mapping[str, str] | None = None,
    error: Any = None,
) -> str:
    """The page, with the ``refused`` section's form as it was sent (``shown``, ``errors``)
    and the others as stored."""
    gateway = gw()
    settings = gateway.settings
    forms = {}
    for section, cls in SECTIONS.items():
        value = shown if section == refused else getattr(settings, section)
        problems = (errors or {}) if section == refused else {}
        forms[section] = {"fields": form_fields(cls, value), "errors": problems}
    return await page(
        "integrations.html",
        snmp=gateway.snmp.status() if gateway.snmp is not None else None,
        mqtt=gateway.mqtt.status_dict() if gateway.mqtt is not None else None,
        mqtt_settings=settings.mqtt,
        metrics=settings.metrics,
        receivers=sorted(settings.snmp.receivers.items()),
        forms=forms,
        refused=refused,
        dlms=dlms_status(),
        mib_name=MIB_NAME,
        error=error,
    )


# ------------------------------------------------------------------------------ receivers


RECEIVERS = NamedEntries(
    cls=SnmpReceiver,
    path=("snmp", "receivers"),
    kind="notification receiver",
    name_pattern=RECEIVER_NAME,
    name_rule="1-32 letters, digits, '_', '.' or '-'",
    template="snmp_receiver.html",
    saved_endpoint=HERE,
    inputs=lambda receiver: form_fields(SnmpReceiver, receiver),
)


@blueprint.route("/integrations/snmp/receivers/new", methods=["GET", "POST"])
@admin_only
async def receiver_new() -> Any:
    return await RECEIVERS.new()


@blueprint.route("/integrations/snmp/receiver/<name>", methods=["GET", "POST"])
async def receiver_edit(name: str) -> Any:
    return await RECEIVERS.edit(name)


@blueprint.post("/integrations/snmp/receiver/<name>/delete")
@admin_only
async def receiver_delete(name: str) -> Response:
    RECEIVERS.stored(name)  # NotFound when there is none
    await gw().update_settings(RECEIVERS.change(name, None))
    return back(HERE, f"Notification receiver {name} deleted")
