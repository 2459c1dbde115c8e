"""The Modbus page: the server's settings as a form (from the settings model), whether it
listens and its connection counters, and the register map as a table in words (the CSV
download has every column). Presentation only: the service and the map are
``gateway.services.modbus``'s."""

from __future__ import annotations

import csv
import io
from typing import Any

from quart import Blueprint, g, request

from mbusgw.gateway.quantity_names import quantity_label
from mbusgw.gateway.settings import ModbusSettings
from mbusgw.web.errors import Forbidden
from mbusgw.web.pages import attempt, back, page
from mbusgw.web.report_pages import as_submitted, refusal
from mbusgw.web.routes import gw
from mbusgw.web.settings_form import changes_from_form, field_errors, form_fields

blueprint = Blueprint("modbus_page", __name__)
MAP_ROWS = 1000  # the page's table; the CSV download has the whole map


@blueprint.route("/modbus", methods=["GET", "POST"])
async def modbus() -> Any:
    gateway = gw()
    settings = gateway.settings.modbus
    errors: dict[str, str] = {}
    others: dict[str, str] = {}
    shown = settings
    if request.method == "POST":
        if not g.user.is_admin:
            raise Forbidden("only an administrator can change settings")
        changes, errors = changes_from_form(ModbusSettings, await request.form)
        if not errors:
            _, problem = await attempt(lambda: gateway.update_settings({"modbus": changes}))
            if problem is None:
                return back("modbus_page.modbus", "Modbus settings saved")
            inputs = form_fields(ModbusSettings, settings)
            errors, others = field_errors(problem.details, "modbus.", inputs)
        shown = as_submitted(settings, changes)
    service = getattr(gateway, "modbus", None)  # none in a gateway without the service
    rows = map_rows(service.map_csv()) if service is not None else []
    html = await page(
        "modbus.html",
        fields=form_fields(ModbusSettings, shown),
        field_errors=errors,
        error=refusal(errors, others),
        running=service is not None,
        address=service.address if service is not None else None,
        stats=service.stats if service is not None else None,
        rows=rows[:MAP_ROWS],
        total=len(rows),
        language=gateway.settings.conventions.language,
    )
    return html, 400 if errors or others else 200


def map_rows(text: str) -> list[dict[str, Any]]:
    """The register map's CSV rows with what each register holds in words."""
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        row["holds"] = _holds(row)
    return rows


def _holds(row: dict[str, str]) -> str:
    if not row["quantity"]:
        return row["field"].replace("_", " ")
    parts = [] if row["function"] in ("", "instantaneous") else [row["function"]]
    parts += [f"{name} {row[name]}" for name in ("storage", "tariff", "subunit")
              if row[name] not in ("", "0")]  # fmt: skip
    label = quantity_label(row["quantity"], ", ".join(parts).replace("_", " "))
    return f"{label} ({row['unit']})" if row["unit"] else label
