"""The page of the services for existing M-Bus masters (docs/slave.md): each service's state
and counters, and its settings as a form made from the settings model."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, request

from mbusgw.gateway.slave_settings import SlaveSettings
from mbusgw.web import operations as ops
from mbusgw.web.errors import BadRequest
from mbusgw.web.pages import attempt, back, gw, page
from mbusgw.web.report_pages import refusal
from mbusgw.web.settings_form import changes_from_form, field_errors, form_fields

blueprint = Blueprint("slave_pages", __name__)


@blueprint.route("/settings/slave", methods=["GET", "POST"])
async def slave() -> Any:
    errors: dict[str, str] = {}
    others: dict[str, str] = {}
    if request.method == "POST":
        if not g.user.is_admin:
            raise BadRequest("only an administrator can change settings")
        changes, errors = changes_from_form(SlaveSettings, await request.form)
        if not errors:
            _, problem = await attempt(lambda: gw().update_settings({"slave": changes}))
            if problem is None:
                return back("slave_pages.slave", "M-Bus slave settings saved")
            inputs = form_fields(SlaveSettings, gw().settings.slave)
            errors, others = field_errors(problem.details, "slave.", inputs)
    html = await page(
        "slave.html",
        status=ops.slave_status(gw()),
        fields=form_fields(SlaveSettings, gw().settings.slave),
        field_errors=errors,
        error=refusal(errors, others),
    )
    return html, 400 if errors or others else 200
