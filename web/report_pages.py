"""The push-report pages: the reports with their delivery status, a form per report (add, edit,
delete), "send test" and "send now", and the receivers and delivery settings they share
(manual 6.8, 6.9, 6.32, 6.35). Every form is a plain CSRF-protected post; the forms are made
from the settings model (``web/settings_form.py``), so every setting a report has is there.
A refused form changes nothing and shows each problem at its input.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from mbusgw.gateway.report_catalog import EVENT_KINDS, TEMPLATES, layout_of, protocol_of
from mbusgw.gateway.report_settings import REPORT_NAME, ReportConfig, ReportSettings
from mbusgw.gateway.settings import without_masks
from mbusgw.web import operations as ops
from mbusgw.web.auth import admin_only
from mbusgw.web.entry_forms import NamedEntries, as_submitted, refusal, retyped_passwords
from mbusgw.web.pages import attempt, back, gw, page
from mbusgw.web.settings_form import (
    FormField,
    changes_from_form,
    field_errors,
    form_fields,
    words,
)
from mbusgw.web.state import state

blueprint = Blueprint("report_pages", __name__)

PROTOCOL_NAMES = {"email": "e-mail", "ftp": "FTP(S)", "http": "HTTP(S)"}
TEMPLATE_CHOICES = tuple(
    (str(number), f"{number} — {PROTOCOL_NAMES[protocol_of(number)]}: {layout_of(number).summary}")
    for number in TEMPLATES
)
EVENT_WORDS = {  # the report catalogue's event kinds as the form offers them
    "device_started": "The gateway started",
    "meter_failed": "A meter's reading failed",
    "meter_recovered": "A meter's reading works again",
    "meter_not_seen": "No values from a meter for too long",
    "report_failed": "A report could not be delivered",
}
EVENT_CHOICES = tuple((kind, EVENT_WORDS.get(kind) or words(kind)) for kind in EVENT_KINDS)


def report_fields(config: ReportConfig) -> list[FormField]:
    return form_fields(
        ReportConfig,
        config,
        choices={"template": TEMPLATE_CHOICES},
        many={"events": EVENT_CHOICES},
    )


REPORTS = NamedEntries(
    cls=ReportConfig,
    path=("reports", "reports"),
    kind="report",
    name_pattern=REPORT_NAME,
    name_rule="1-32 letters, digits, '_', '.' or '-', starting with a letter or digit",
    template="report.html",
    saved_endpoint="report_pages.reports",
    inputs=report_fields,
    many=("events",),
)


# ------------------------------------------------------------------------------ list


@blueprint.get("/reports")
async def reports() -> str:
    gateway = gw()
    settings = gateway.settings.reports
    service = getattr(gateway, "reports", None)
    statuses = {s.name: s.as_dict() for s in service.status()} if service is not None else {}
    rows = [
        {"name": name, "config": config, "status": statuses.get(name)}
        for name, config in sorted(settings.reports.items())
    ]
    return await page(
        "reports.html",
        rows=rows,
        running=service is not None,
        settings=settings,
        protocol_of=protocol_of,
        protocols=PROTOCOL_NAMES,
    )


# ------------------------------------------------------------------------------ one report


@blueprint.route("/reports/new", methods=["GET", "POST"])
@admin_only
async def report_new() -> Any:
    return await REPORTS.new()


@blueprint.route("/report/<name>", methods=["GET", "POST"])
async def report_edit(name: str) -> Any:
    return await REPORTS.edit(name)


@blueprint.post("/report/<name>/delete")
@admin_only
async def report_delete(name: str) -> Response:
    await ops.delete_report(gw(), name)
    return back("report_pages.reports", f"Report {name} deleted")


@blueprint.post("/report/<name>/<action>")
@admin_only
async def report_send(name: str, action: str) -> Response:
    job = state().jobs.report(name, action)
    return back("pages.job", f"Sending report {name}", job=job.id)


# ------------------------------------------------------------------------------ receivers


@blueprint.route("/settings/reports", methods=["GET", "POST"])
async def report_settings() -> Any:
    settings = gw().settings.reports
    errors: dict[str, str] = {}
    others: dict[str, str] = {}
    shown = settings
    if request.method == "POST":
        changes, errors = changes_from_form(ReportSettings, await request.form)
        if not errors:
            change = without_masks({"reports": changes})
            _, problem = await attempt(lambda: gw().update_settings(change))
            if problem is None:
                return back("report_pages.report_settings", "Report settings saved")
            inputs = form_fields(ReportSettings, settings)
            errors, others = field_errors(problem.details, "reports.", inputs)
        shown = as_submitted(settings, changes)
        errors |= retyped_passwords(form_fields(ReportSettings, settings), changes)
    html = await page(
        "report_settings.html",
        fields=form_fields(ReportSettings, shown),
        field_errors=errors,
        error=refusal(errors, others),
    )
    return html, 400 if errors or others else 200
