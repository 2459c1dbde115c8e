"""Identity and locale conventions of a report: headings in English, Swedish or German, the
decimal separator, the first day of the week, and how times and values are written.

Values stay exact: a decimal is written from its integer mantissa and exponent, never through a
float. Times are ISO 8601 in the gateway's time zone with the UTC offset; the meter's own clock
has no zone (the meter keeps local time), so it is written without an offset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from mbusgw.core.units import Flag, ValueKind

HEADINGS: dict[str, dict[str, str]] = {
    "en": {
        "device": "device",
        "contact": "contact",
        "report": "report",
        "template": "template",
        "from": "from",
        "until": "until",
        "generated": "generated",
        "meters": "meters",
        "values": "values",
        "readings": "readings",
        "meter": "meter",
        "position": "position",
        "secondary_address": "secondary address",
        "manufacturer": "manufacturer",
        "medium": "medium",
        "quantity": "quantity",
        "unit": "unit",
        "description": "description",
        "time": "time",
        "meter_time": "meter time",
        "value": "value",
        "flags": "flags",
        "frame": "frame",
        "telegram": "telegram (hex)",
        "event": "event",
        "events": "events",
        "text": "text",
        "detail": "detail",
        "summary_sheet": "Report",
        "values_sheet": "Values",
        "subject": "Meter report",
        "event_subject": "Gateway events",
        "test": "test report",
        "device_started": "the gateway started",
        "meter_failed": "meter reading failed",
        "meter_recovered": "meter reading works again",
        "meter_not_seen": "no values from the meter for too long",
        "report_failed": "a report could not be delivered",
        "report_test": "test of an event report",
    },
    "sv": {
        "device": "enhet",
        "contact": "kontakt",
        "report": "rapport",
        "template": "mall",
        "from": "från",
        "until": "till",
        "generated": "skapad",
        "meters": "mätare",
        "values": "värden",
        "readings": "avläsningar",
        "meter": "mätare",
        "position": "position",
        "secondary_address": "sekundäradress",
        "manufacturer": "tillverkare",
        "medium": "medium",
        "quantity": "storhet",
        "unit": "enhet",
        "description": "beskrivning",
        "time": "tid",
        "meter_time": "mätartid",
        "value": "värde",
        "flags": "flaggor",
        "frame": "telegramdel",
        "telegram": "telegram (hex)",
        "event": "händelse",
        "events": "händelser",
        "text": "text",
        "detail": "detaljer",
        "summary_sheet": "Rapport",
        "values_sheet": "Värden",
        "subject": "Mätarrapport",
        "event_subject": "Händelser",
        "test": "testrapport",
        "device_started": "enheten startade",
        "meter_failed": "mätaravläsningen misslyckades",
        "meter_recovered": "mätaravläsningen fungerar igen",
        "meter_not_seen": "inga värden från mätaren på för länge",
        "report_failed": "en rapport kunde inte levereras",
        "report_test": "test av en händelserapport",
    },
    "de": {
        "device": "Gerät",
        "contact": "Kontakt",
        "report": "Bericht",
        "template": "Vorlage",
        "from": "von",
        "until": "bis",
        "generated": "erstellt",
        "meters": "Zähler",
        "values": "Werte",
        "readings": "Auslesungen",
        "meter": "Zähler",
        "position": "Position",
        "secondary_address": "Sekundäradresse",
        "manufacturer": "Hersteller",
        "medium": "Medium",
        "quantity": "Größe",
        "unit": "Einheit",
        "description": "Beschreibung",
        "time": "Zeit",
        "meter_time": "Zählerzeit",
        "value": "Wert",
        "flags": "Flags",
        "frame": "Telegrammteil",
        "telegram": "Telegramm (hex)",
        "event": "Ereignis",
        "events": "Ereignisse",
        "text": "Text",
        "detail": "Details",
        "summary_sheet": "Bericht",
        "values_sheet": "Werte",
        "subject": "Zählerbericht",
        "event_subject": "Ereignisse",
        "test": "Testbericht",
        "device_started": "das Gateway ist gestartet",
        "meter_failed": "Zählerauslesung fehlgeschlagen",
        "meter_recovered": "Zählerauslesung funktioniert wieder",
        "meter_not_seen": "zu lange keine Werte vom Zähler",
        "report_failed": "ein Bericht konnte nicht zugestellt werden",
        "report_test": "Test eines Ereignisberichts",
    },
}

_FLAG_NAMES = tuple((int(flag), flag.name.lower()) for flag in Flag)
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DATE = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Conventions:
    """How a report writes what it says: language, decimal separator, week, time zone."""

    language: str = "en"
    decimal_separator: str = "."
    first_day_of_week: str = "monday"
    zone: dt.tzinfo = dt.UTC

    @classmethod
    def of(cls, settings: object) -> Conventions:
        """From the gateway's ``Settings`` (conventions and time zone)."""
        conventions = settings.conventions  # type: ignore[attr-defined]
        return cls(
            conventions.language,
            conventions.decimal_separator,
            conventions.first_day_of_week,
            ZoneInfo(settings.timezone),  # type: ignore[attr-defined]
        )

    def heading(self, key: str) -> str:
        return HEADINGS[self.language][key]

    def headings(self, *keys: str) -> list[str]:
        table = HEADINGS[self.language]
        return [table[key] for key in keys]

    def event_text(self, kind: str) -> str:
        return HEADINGS[self.language].get(kind, kind.replace("_", " "))

    def local(self, seconds: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(seconds, self.zone)

    def time(self, seconds: int) -> str:
        """A reception time: local ISO 8601 with the UTC offset."""
        return self.local(seconds).isoformat()

    def time_formatter(self) -> Callable[[int], str]:
        """``time`` with a small cache: the readings of one meter share their times."""
        cache: dict[int, str] = {}
        zone = self.zone

        def formatted(seconds: int) -> str:
            text = cache.get(seconds)
            if text is None:
                if len(cache) > 4096:
                    cache.clear()
                text = cache[seconds] = dt.datetime.fromtimestamp(seconds, zone).isoformat()
            return text

        return formatted

    def week_start(self) -> int:
        """Python weekday number of the first day of the week."""
        return 6 if self.first_day_of_week == "sunday" else 0

    def number(self, value: float | int) -> str:
        text = repr(value) if isinstance(value, float) else str(value)
        return text.replace(".", self.decimal_separator) if self.decimal_separator != "." else text


def meter_clock(seconds: int) -> str:
    """The meter's own time (its local time, stored as if UTC), without an offset."""
    return (_EPOCH + dt.timedelta(seconds=seconds)).isoformat()


def flag_names(flags: int) -> str:
    return "+".join(name for bit, name in _FLAG_NAMES if flags & bit)


def format_decimals(mantissa: np.ndarray, exponent: np.ndarray, separator: str) -> list[str]:
    """Exact decimal texts of ``mantissa × 10**exponent``, trailing zeros kept (45.60)."""
    if len(exponent) and (exponent == exponent[0]).all():
        return _with_exponent(mantissa, int(exponent[0]), separator)
    return [
        _with_exponent(mantissa[i : i + 1], int(e), separator)[0]
        for i, e in enumerate(exponent.tolist())
    ]


def _with_exponent(mantissa: np.ndarray, exponent: int, separator: str) -> list[str]:
    if exponent == 0:
        return list(map(str, mantissa.tolist()))
    if exponent > 0:
        zeros = "0" * exponent
        return [f"{m}{zeros}" if m else "0" for m in mantissa.tolist()]
    places = -exponent
    if places > 18 or (mantissa < 0).any():  # the general way: digits and a point put in
        out = []
        for m in mantissa.tolist():
            digits = str(-m if m < 0 else m).rjust(places + 1, "0")
            text = digits[:-places] + separator + digits[-places:]
            out.append("-" + text if m < 0 else text)
        return out
    whole, part = np.divmod(mantissa, 10**places)  # non-negative: both parts at once in numpy
    form = f"{{}}{separator}{{:0{places}d}}".format
    return list(map(form, whole.tolist(), part.tolist()))


def value_texts(
    kind: np.ndarray,
    mantissa: np.ndarray,
    exponent: np.ndarray,
    flags: np.ndarray,
    blobs: tuple[bytes | None, ...] | None,
    separator: str,
) -> list[str]:
    """Each value of a column set as report text (exact decimals, ISO dates, hex bytes)."""
    if len(kind) and (kind == ValueKind.DECIMAL).all():
        return format_decimals(mantissa, exponent, separator)
    kinds = kind.tolist()
    out = []
    for i, k in enumerate(kinds):
        m = int(mantissa[i])
        if k == ValueKind.DECIMAL:
            out.append(format_decimals(mantissa[i : i + 1], exponent[i : i + 1], separator)[0])
        elif k == ValueKind.REAL:
            real = float(mantissa[i : i + 1].view(np.float64)[0]) * 10.0 ** int(exponent[i])
            out.append(repr(real).replace(".", separator))
        elif k in (ValueKind.DATE, ValueKind.DATETIME):
            invalid = int(flags[i]) & Flag.INVALID and m == 0
            if invalid:
                out.append("")
            elif k == ValueKind.DATE:
                out.append((_EPOCH_DATE + dt.timedelta(days=m // 86_400)).isoformat())
            else:
                out.append(meter_clock(m))
        elif k == ValueKind.TIME:
            valid = not int(flags[i]) & Flag.INVALID and 0 <= m < 86_400
            out.append(f"{m // 3600:02d}:{m // 60 % 60:02d}:{m % 60:02d}" if valid else "")
        elif k == ValueKind.BYTES:
            out.append(((blobs[i] if blobs else None) or b"").hex().upper())
        elif k in (ValueKind.TEXT, ValueKind.BCD_ERROR):
            out.append(((blobs[i] if blobs else None) or b"").decode(errors="replace"))
        else:
            out.append("")
    return out
