"""The push-report pages: the reports with their delivery status, a form per report (add, edit,
delete), "send test" and "send now", and the receivers and delivery settings they share
(manual 6.8, 6.9, 6.32, 6.35). Every form is a plain CSRF-protected post; the forms are made
from the settings model (``web/settings_form.py``), so every setting a report has is there.
A refused form changes nothing and shows each problem at its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from typing import Any

from quart import Blueprint, Response, request

from mbusgw.gateway.report_catalog import EVENT_KINDS, TEMPLATES, layout_of, protocol_of
from mbusgw.gateway.report_settings import REPORT_NAME, ReportConfig, ReportSettings
from mbusgw.gateway.settings import SECRET_MASK, without_masks
from mbusgw.web import operations as ops
from mbusgw.web.auth import admin_only
from mbusgw.web.errors import ApiError, InvalidSettings, NotFound
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


async def render_report_form(
    name: str | None,
    config: ReportConfig,
    errors: Mapping[str, str] | None = None,
    others: Mapping[str, str] | None = None,
    new_name: str = "",
) -> tuple[str, int]:
    html = await page(
        "report.html",
        name=name,
        new_name=new_name,
        fields=report_fields(config),
        field_errors=errors or {},
        error=refusal(errors, others),
    )
    return html, 400 if errors or others else 200


def refusal(errors: Mapping[str, str] | None, others: Mapping[str, str] | None) -> ApiError | None:
    """The notice over a refused form (its problems are shown at their inputs, the rest here)."""
    if not errors and not others:
        return None
    return InvalidSettings("Refused; nothing was saved. See the marked fields.", others or None)


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
    if request.method == "GET":
        return await render_report_form(None, ReportConfig())
    form = await request.form
    name = form.get("name", "").strip()
    changes, errors = changes_from_form(ReportConfig, form, many=("events",))
    if not REPORT_NAME.fullmatch(name):
        errors["name"] = "1-32 letters, digits, '_', '.' or '-', starting with a letter or digit"
    elif name in gw().settings.reports.reports:
        errors["name"] = "a report of that name exists already"
    return await save_report(name, changes, errors, ReportConfig(), created=True)


@blueprint.route("/report/<name>", methods=["GET", "POST"])
async def report_edit(name: str) -> Any:
    stored = gw().settings.reports.reports.get(name)
    if stored is None:
        raise NotFound(f"no report {name!r} is configured")
    if request.method == "GET":
        return await render_report_form(name, stored)
    changes, errors = changes_from_form(ReportConfig, await request.form, many=("events",))
    return await save_report(name, changes, errors, stored, created=False)


async def save_report(
    name: str,
    changes: dict[str, Any],
    errors: dict[str, str],
    stored: ReportConfig,
    *,
    created: bool,
) -> Any:
    """Store the report's form, or show it again with its problems (nothing is stored)."""
    others: dict[str, str] = {}
    if not errors:
        change = without_masks({"reports": {"reports": {name: changes}}})
        _, problem = await attempt(lambda: gw().update_settings(change))
        if problem is None:
            return back("report_pages.reports", f"Report {name} {'added' if created else 'saved'}")
        inputs = report_fields(stored)
        errors, others = field_errors(problem.details, f"reports.reports.{name}.", inputs)
    shown = as_submitted(stored, changes)
    errors |= retyped_passwords(report_fields(stored), changes)
    if created:
        return await render_report_form(None, shown, errors, others, new_name=name)
    return await render_report_form(name, shown, errors, others)


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


def as_submitted(stored: Any, changes: dict[str, Any]) -> Any:
    """The settings as a refused form had them, to show it again; passwords stay the stored
    ones (a password typed in is never sent back to the browser)."""
    values = {}
    for f in fields(stored):
        if f.name not in changes:
            continue
        current, submitted = getattr(stored, f.name), changes[f.name]
        if is_dataclass(current):
            values[f.name] = as_submitted(current, submitted)
        elif not f.metadata.get("secret") and not isinstance(current, dict):
            values[f.name] = submitted
    return replace(stored, **values) if values else stored


def retyped_passwords(shown: list[FormField], changes: dict[str, Any]) -> dict[str, str]:
    """The password inputs (and secret text areas) of a refused form that held a new secret:
    it was not saved."""
    wanted = {}
    for field in shown:
        if field.kind not in ("password", "secret_text"):
            continue
        submitted: Any = changes
        for part in field.name.split("."):
            submitted = submitted.get(part, "") if isinstance(submitted, dict) else ""
        if submitted not in ("", SECRET_MASK, field.value):
            again = "type the password" if field.kind == "password" else "paste it"
            wanted[field.name] = f"not saved: {again} again"
    return wanted
