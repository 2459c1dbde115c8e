"""HTML forms for sections of the settings, made from the settings dataclasses themselves.

``form_fields`` lists the inputs of a dataclass (nested ones under dotted names such as
``http.uri``) with their current values, kinds, limits and notes, so a page shows every setting
the model has; ``changes_from_form`` reads a posted form back into a nested change. Values that
are not even of the right type (a port that is no number) are reported per field here; every
other check is the settings' own (``Settings.updated``), whose dotted paths ``field_errors``
maps back onto the inputs. Passwords are shown as ``SECRET_MASK`` and come back as it when left
alone, which ``without_masks`` turns into "keep the stored one".
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, get_args, get_origin, get_type_hints

from mbusgw.gateway.cron import PREDEFINED
from mbusgw.gateway.settings import masked_secret

LABELS = {
    "uri": "URI",
    "email": "E-mail server",
    "ftp": "FTP server",
    "http": "HTTP receiver",
    "email_s": "E-mail (s)",
    "ftp_s": "FTP (s)",
    "http_s": "HTTP (s)",
    "retry_offset_s": "Retry offset (s)",
    "system_trust": "Trust the system's CAs too",
    "trusted_certificates": "Trusted certificates (PEM)",
    "adaptive_retries": "Adaptive retries (table 10)",
    "passive": "Passive mode",
    "timeout_s": "Timeout (s)",
    "tls": "TLS",
    "ca_certificate": "CA certificates (PEM)",
    "client_certificate": "Client certificate (PEM)",
    "client_key": "Client key (PEM)",
    "client_id": "Client id",
    "qos": "QoS",
    "discovery": "Home Assistant discovery",
    "traps_on_status": "Notifications on status changes",
    "traps_on_meters": "Notifications on meters failed, recovered, not seen",
    "inform": "INFORM (acknowledged, sent again until it is)",
    "meter_values": "Each meter's latest values as gauges",
}
OWN = "cron"  # the schedule choice "own times": the expression is in the input NAME.cron
LONG_TEXT = 10_000  # strings allowed to be longer than this get a text area


@dataclass(frozen=True)
class FormField:
    name: str  # the input's name: the dotted path below the form's section
    label: str
    kind: str  # checkbox | number | select | many | password | secret_text | textarea | text
    value: Any
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)
    minimum: float | None = None
    maximum: float | None = None
    note: str = ""
    group: str = ""  # the nested section it belongs to ("" = the section itself)
    suggestions: str = ""  # the id of a <datalist> the input offers


def words(identifier: str) -> str:
    """An identifier as words: "every_15_minutes" -> "Every 15 minutes"."""
    text = identifier.replace("_", " ")
    return text[:1].upper() + text[1:]


SCHEDULE_CHOICES = tuple((name, words(name)) for name in PREDEFINED)


def note_words(note: str) -> str:
    """A field's note as a person reads it: the model writes what an empty or a special
    number means as ``'' = all`` or ``-1 = the job setting``; the form says "leave empty for
    all" and "-1 means the job setting"."""
    note = re.sub(r"(?<![\w'])''\s*=\s*", "leave empty for ", note)
    note = re.sub(r"(?<![\w.])(-?\d+)\s*=\s*", r"\1 means ", note)
    return note[:1].upper() + note[1:]


def label_of(name: str) -> str:
    return LABELS.get(name) or name.replace("_", " ").capitalize()


def form_fields(
    cls: type,
    value: Any,
    *,
    prefix: str = "",
    group: str = "",
    choices: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
    suggestions: Mapping[str, str] | None = None,
    many: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
) -> list[FormField]:
    """The inputs of dataclass ``cls`` with ``value``'s settings; tables of named entries
    are left out (they have pages of their own). ``choices`` and ``suggestions`` (by field
    name) offer a select or a <datalist> where the model has free values; ``many`` offers a
    checkbox per choice for a comma-separated list (its value: the chosen ones)."""
    choices, suggestions, many = choices or {}, suggestions or {}, many or {}
    hints = get_type_hints(cls)
    result: list[FormField] = []
    for f in fields(cls):
        kind, meta, current = hints[f.name], f.metadata, getattr(value, f.name)
        name = prefix + f.name
        if is_dataclass(kind):
            result += form_fields(
                kind,
                current,
                prefix=name + ".",
                group=label_of(f.name),
                choices=choices,
                suggestions=suggestions,
                many=many,
            )
            continue
        if get_origin(kind) is dict:
            continue
        common = {
            "name": name,
            "label": label_of(f.name),
            "note": note_words(meta.get("note", "")),
            "group": group,
        }
        if meta.get("cron"):  # a predefined schedule in words, or own cron times
            field = FormField(kind="schedule", value=current, choices=SCHEDULE_CHOICES, **common)
        elif meta.get("secret"):
            # a long secret (a PEM private key) has lines: a text area, masked as a password
            kind_of = "secret_text" if meta.get("max_length", 0) > LONG_TEXT else "password"
            field = FormField(kind=kind_of, value=masked_secret(current), **common)
        elif kind is bool:
            field = FormField(kind="checkbox", value=current, **common)
        elif f.name in many:
            chosen = frozenset(part.strip() for part in str(current).split(","))
            # a note's "leave empty" means: no box checked
            common["note"] = common["note"].replace("leave empty for", "check none for")
            field = FormField(kind="many", value=chosen, choices=many[f.name], **common)
        elif f.name in choices or meta.get("choices"):
            options = choices.get(f.name) or tuple(
                (c, c.replace("_", " ") or "(default)") for c in meta["choices"]
            )
            field = FormField(kind="select", value=str(current), choices=options, **common)
        elif kind is int:
            field = FormField(
                kind="number",
                value=current,
                minimum=meta.get("min"),
                maximum=meta.get("max"),
                **common,
            )
        elif meta.get("max_length", 0) > LONG_TEXT:
            field = FormField(kind="textarea", value=current, **common)
        else:
            field = FormField(
                kind="text", value=current, suggestions=suggestions.get(f.name, ""), **common
            )
        result.append(field)
    return result


def changes_from_form(
    cls: type, form: Mapping[str, str], *, prefix: str = "", many: Collection[str] = ()
) -> tuple[dict[str, Any], dict[str, str]]:
    """A nested change for ``cls`` from a posted form, and the inputs that are not even of
    their field's type (by input name). Every field of the form is in the change: a checkbox
    left out is off; the checked boxes of a ``many`` field (by field name) are its value,
    comma-separated."""
    hints = get_type_hints(cls)
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields(cls):
        kind, name = hints[f.name], prefix + f.name
        if is_dataclass(kind):
            nested, nested_errors = changes_from_form(kind, form, prefix=name + ".", many=many)
            changes[f.name] = nested
            errors.update(nested_errors)
        elif get_origin(kind) is dict:
            continue
        elif f.metadata.get("cron"):
            choice = form.get(name, "")
            changes[f.name] = form.get(name + ".cron", "").strip() if choice == OWN else choice
        elif kind is bool:
            changes[f.name] = form.get(name) == "on"
        elif f.name in many:
            # a posted form (a MultiDict) has every checked box; a plain mapping has one
            getlist = getattr(form, "getlist", None)
            chosen = getlist(name) if getlist else [form.get(name, "")]
            changes[f.name] = ", ".join(part for part in chosen if part)
        elif kind is int or int in get_args(kind):
            text = form.get(name, "").strip()
            try:
                changes[f.name] = int(text)
            except ValueError:
                errors[name] = "must be a whole number"
        else:
            changes[f.name] = form.get(name, "").replace("\r\n", "\n")
    return changes, errors


def field_errors(
    details: Any, prefix: str, shown: list[FormField]
) -> tuple[dict[str, str], dict[str, str]]:
    """Refused settings (dotted path → message) as errors of the ``shown`` inputs (the paths
    below ``prefix``) and the others (the section as a whole, or what it affects elsewhere)."""
    inputs = {field.name for field in shown}
    by_input: dict[str, str] = {}
    others: dict[str, str] = {}
    for path, message in (details or {}).items():
        name = path[len(prefix) :] if path.startswith(prefix) else None
        if name in inputs:
            by_input[name] = message
        else:
            others[path] = message
    return by_input, others
