"""The form pages of a table of named entries in the settings (the push reports, the SNMP
notification receivers): a new entry with its name, an entry edited, each through
``update_settings`` (all or nothing); a refused form is shown again with each problem at its
input, secrets as the stored ones (masked) and nothing saved. The forms are made from the
entry's settings dataclass (``web/settings_form.py``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

from quart import request

from mbusgw.gateway.settings import SECRET_MASK, without_masks
from mbusgw.web.errors import ApiError, InvalidSettings, NotFound
from mbusgw.web.pages import attempt, back, gw, page
from mbusgw.web.settings_form import FormField, changes_from_form, field_errors


@dataclass(frozen=True)
class NamedEntries:
    cls: type  # the entry's settings dataclass
    path: tuple[str, ...]  # where the table is in the settings: ("reports", "reports")
    kind: str  # the entry in words: "report", "notification receiver"
    name_pattern: re.Pattern[str]
    name_rule: str  # what a name may be, said when one is not
    template: str  # the form's page; it gets name, new_name, fields, field_errors, error
    saved_endpoint: str  # where a stored form goes
    inputs: Callable[[Any], list[FormField]]  # the entry's inputs with an entry's values
    many: tuple[str, ...] = ()  # fields with a checkbox per choice

    def table(self) -> Mapping[str, Any]:
        found: Any = gw().settings
        for part in self.path:
            found = getattr(found, part)
        return found

    def change(self, name: str, entry: Any) -> dict[str, Any]:
        """The nested settings change of one entry (None removes it)."""
        change: Any = {name: entry}
        for part in reversed(self.path):
            change = {part: change}
        return change

    def stored(self, name: str) -> Any:
        entry = self.table().get(name)
        if entry is None:
            raise NotFound(f"no {self.kind} {name!r} is configured")
        return entry

    async def new(self) -> Any:
        """The page and the post of a new entry."""
        if request.method == "GET":
            return await self.render(None, self.cls())
        form = await request.form
        name = form.get("name", "").strip()
        changes, errors = changes_from_form(self.cls, form, many=self.many)
        if not self.name_pattern.fullmatch(name):
            errors["name"] = self.name_rule
        elif name in self.table():
            errors["name"] = f"a {self.kind} of that name exists already"
        return await self.save(name, changes, errors, self.cls(), created=True)

    async def edit(self, name: str) -> Any:
        """The page and the post of an entry there is."""
        stored = self.stored(name)
        if request.method == "GET":
            return await self.render(name, stored)
        changes, errors = changes_from_form(self.cls, await request.form, many=self.many)
        return await self.save(name, changes, errors, stored, created=False)

    async def save(
        self,
        name: str,
        changes: dict[str, Any],
        errors: dict[str, str],
        stored: Any,
        *,
        created: bool,
    ) -> Any:
        """Store the entry's form, or show it again with its problems (nothing is stored)."""
        others: dict[str, str] = {}
        if not errors:
            change = without_masks(self.change(name, changes))
            _, problem = await attempt(lambda: gw().update_settings(change))
            if problem is None:
                done = "added" if created else "saved"
                return back(self.saved_endpoint, f"{self.kind.capitalize()} {name} {done}")
            prefix = ".".join((*self.path, name)) + "."
            errors, others = field_errors(problem.details, prefix, self.inputs(stored))
        shown = as_submitted(stored, changes)
        errors |= retyped_passwords(self.inputs(stored), changes)
        if created:
            return await self.render(None, shown, errors, others, new_name=name)
        return await self.render(name, shown, errors, others)

    async def render(
        self,
        name: str | None,
        entry: Any,
        errors: Mapping[str, str] | None = None,
        others: Mapping[str, str] | None = None,
        new_name: str = "",
    ) -> tuple[str, int]:
        html = await page(
            self.template,
            name=name,
            new_name=new_name,
            fields=self.inputs(entry),
            field_errors=errors or {},
            error=refusal(errors, others),
        )
        return html, 400 if errors or others else 200


def refusal(errors: Mapping[str, str] | None, others: Mapping[str, str] | None) -> ApiError | None:
    """The notice over a refused form (its problems are shown at their inputs, the rest here)."""
    if not errors and not others:
        return None
    return InvalidSettings("Refused; nothing was saved. See the marked fields.", others or None)


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
