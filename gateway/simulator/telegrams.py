"""RSP_UD telegrams of simulated meters, built from real frames.

A ``Template`` is a real variable-data frame (CI 0x72) cut into its header and records. It knows
where the live values are: counters (energy, volume, mass) that only grow, and instantaneous
quantities (power, flow, temperatures) that swing around the recorded value. ``render`` gives the
frame a meter sends at a given moment, with its own identity, access number and values, and a
fresh checksum. Nothing here decodes values for use: the walk only finds record boundaries and the
fields worth animating; the gateway's decoder is what reads the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

from mbusgw.core.checksum import sum8
from mbusgw.core.frame import manufacturer_code, parse_frame

CI_VARIABLE = 0x72
HEADER = 12  # ID(4) manufacturer(2) version medium access status signature(2)
DIF_MANUFACTURER = 0x0F
DIF_MORE_RECORDS = 0x1F
DIF_IDLE_FILLER = 0x2F
RSP_UD = 0x08

# Data length by the DIF's data field (0x0D variable length and 0x0F special are handled apart).
_LENGTHS = {0x0: 0, 0x1: 1, 0x2: 2, 0x3: 3, 0x4: 4, 0x5: 4, 0x6: 6, 0x7: 8, 0x8: 0}
_LENGTHS.update({0x9: 1, 0xA: 2, 0xB: 3, 0xC: 4, 0xE: 6})
_INTEGER = {0x1, 0x2, 0x3, 0x4, 0x6, 0x7}
_BCD = {0x9, 0xA, 0xB, 0xC, 0xE}


class TemplateError(ValueError):
    """The frame cannot serve as a template (not CI 0x72, records that do not parse)."""


@dataclass(frozen=True)
class LiveField:
    """A value inside a record that changes over time."""

    offset: int  # into the record bytes of its telegram
    length: int
    bcd: bool
    counter: bool  # True: grows; False: swings around ``base``
    base: int


@dataclass(frozen=True)
class Record:
    raw: bytes
    live: LiveField | None


def _variable_length(lvar: int) -> int:
    if lvar < 0xC0:
        return lvar  # ASCII text
    if lvar < 0xF0:
        return lvar & 0x0F  # BCD or binary, up to 15 bytes
    if lvar <= 0xF4:
        return 4 * (lvar - 0xEC)
    if lvar in (0xF5, 0xF6):
        return 48 if lvar == 0xF5 else 64
    raise TemplateError(f"LVAR 0x{lvar:02X} is reserved")


def _live_kind(vif: int) -> bool | None:
    """True for a counter VIF, False for an instantaneous one, None for anything else."""
    if vif & 0x80:
        return None  # VIF extensions change the meaning; leave such records as they are
    if vif <= 0x1F:
        return True  # energy (Wh, J), volume, mass
    if 0x28 <= vif <= 0x6B:
        return False  # power, volume and mass flow, flow/return/difference/external temperature
    return None


def _bcd_value(raw: bytes) -> int | None:
    digits = raw[::-1].hex()
    return int(digits) if digits.isdigit() else None


def _walk_records(data: bytes) -> tuple[list[Record], bytes]:
    """Split the data after the header into records and the tail (0x0F/0x1F and what follows)."""
    records: list[Record] = []
    i = HEADER
    while i < len(data):
        start = i
        dif = data[i]
        if dif in (DIF_MANUFACTURER, DIF_MORE_RECORDS):
            return records, data[i:]
        if dif == DIF_IDLE_FILLER:
            records.append(Record(bytes((dif,)), None))
            i += 1
            continue
        try:
            i += 1
            plain = dif & 0x80 == 0  # no DIFE: storage 0 or 1, tariff 0, subunit 0
            ext = dif
            while ext & 0x80:
                ext = data[i]
                i += 1
            vif = data[i]
            i += 1
            if vif & 0x7F == 0x7C:  # plain-text VIF: length and text follow
                i += 1 + data[i]
            ext = vif
            while ext & 0x80:
                ext = data[i]
                i += 1
            coding = dif & 0x0F
            if coding == 0x0D:
                length = _variable_length(data[i])
                i += 1
            else:
                length = _LENGTHS[coding]
        except (IndexError, KeyError) as exc:
            raise TemplateError(f"record at byte {start} does not parse") from exc
        value_at = i - start
        i += length
        if i > len(data):
            raise TemplateError(f"record at byte {start} runs past the end")
        raw = data[start:i]
        live = None
        kind = _live_kind(vif)
        instantaneous = dif & 0x70 == 0  # function 0, storage 0
        if plain and instantaneous and kind is not None and length and coding in _INTEGER | _BCD:
            value_raw = raw[value_at:]
            bcd = coding in _BCD
            if bcd:
                base = _bcd_value(value_raw)
            else:
                base = int.from_bytes(value_raw, "little", signed=True)
            if base is not None:
                live = LiveField(value_at, length, bcd, kind, base)
        records.append(Record(raw, live))
    return records, b""


@dataclass(frozen=True)
class Template:
    name: str
    address: int
    header: bytes
    records: tuple[Record, ...]
    tail: bytes  # manufacturer-specific data (0x0F …) or b""

    @property
    def id(self) -> str:
        return self.header[3::-1].hex().upper()

    @property
    def manufacturer(self) -> int:
        return int.from_bytes(self.header[4:6], "little")

    @property
    def version(self) -> int:
        return self.header[6]

    @property
    def medium(self) -> int:
        return self.header[7]

    @classmethod
    def from_frame(cls, raw: bytes, name: str = "frame") -> Template:
        frame = parse_frame(raw)
        if getattr(frame, "ci", None) != CI_VARIABLE:
            raise TemplateError(f"{name}: not a variable-data RSP_UD (CI 0x72)")
        data = frame.data
        if len(data) < HEADER:
            raise TemplateError(f"{name}: header of {len(data)} bytes")
        records, tail = _walk_records(data)
        if tail[:1] == bytes((DIF_MORE_RECORDS,)):
            tail = b""  # the simulator decides itself whether more telegrams follow
        return cls(name, frame.address, data[:HEADER], tuple(records), tail)

    def split(self, telegrams: int) -> list[tuple[Record, ...]]:
        """The records cut into ``telegrams`` contiguous groups (at least one record each)."""
        count = max(1, min(telegrams, len(self.records)))
        bounds = [round(k * len(self.records) / count) for k in range(count + 1)]
        return [self.records[bounds[k] : bounds[k + 1]] for k in range(count)]


@dataclass(frozen=True)
class Identity:
    """What a meter answers to in a secondary selection, and writes in its header."""

    id: str  # 8 hex digits, most significant first; A-E allowed, F is the wildcard
    manufacturer: str
    version: int
    medium: int

    def header_bytes(self, access: int, status: int, signature: bytes) -> bytes:
        return (
            bytes.fromhex(self.id)[::-1]
            + manufacturer_code(self.manufacturer).to_bytes(2, "little")
            + bytes((self.version, self.medium, access & 0xFF, status))
            + signature
        )


def _encode(field: LiveField, value: int) -> bytes:
    if field.bcd:
        value = max(0, value) % 10 ** (2 * field.length)
        return bytes.fromhex(f"{value:0{2 * field.length}d}")[::-1]
    bits = 8 * field.length
    value = max(-(1 << (bits - 1)), min(value, (1 << (bits - 1)) - 1))
    return value.to_bytes(field.length, "little", signed=True)


@dataclass(frozen=True)
class Evolution:
    """How one meter's values move: counters by ``rate`` units per second (times a per-field
    scale) since the meter went into service ``age`` seconds before the simulation started,
    instantaneous values by ±``swing`` over ``period`` seconds."""

    rate: float = 0.01
    swing: float = 0.1
    period: float = 900.0
    phase: float = 0.0
    age: float = 0.0

    def value(self, field: LiveField, t: float) -> int:
        if field.counter:
            scale = 1.0 + abs(field.base) * 1e-5
            return field.base + int(self.rate * scale * (self.age + t))
        angle = 2 * math.pi * t / self.period + self.phase
        return field.base + round(abs(field.base) * self.swing * math.sin(angle))


def render_records(
    records: tuple[Record, ...], t: float, evolution: Evolution, fabrication: str | None = None
) -> bytearray:
    """The data records at time ``t``, live values animated (wired and wireless telegrams)."""
    body = bytearray()
    for record in records:
        start = len(body)
        body += record.raw
        field = record.live
        if field is not None:
            at = start + field.offset
            body[at : at + field.length] = _encode(field, evolution.value(field, t))
        elif fabrication is not None and record.raw[:2] == b"\x0c\x78":
            body[start + 2 : start + 6] = bytes.fromhex(fabrication)[::-1]
    return body


def render(
    template: Template,
    records: tuple[Record, ...],
    identity: Identity,
    *,
    address: int,
    access: int,
    more_follow: bool,
    t: float,
    evolution: Evolution,
    fabrication: str | None = None,
) -> bytes:
    """The RSP_UD long frame of one telegram at time ``t`` (seconds since the meter started)."""
    header = identity.header_bytes(access, template.header[9], template.header[10:12])
    body = bytearray(header) + render_records(records, t, evolution, fabrication)
    body += bytes((DIF_MORE_RECORDS,)) if more_follow else template.tail
    user = bytes((RSP_UD, address, CI_VARIABLE)) + body
    length = len(user)
    return bytes((0x68, length, length, 0x68)) + user + bytes((sum8(user), 0x16))


@cache
def bundled_templates() -> dict[str, Template]:
    """The real frames shipped with the simulator (see ``frames/README.md``), by name."""
    folder = resources.files(__package__) / "frames"
    out: dict[str, Template] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".hex"):
            stem = entry.name.removesuffix(".hex")
            out[stem] = Template.from_frame(bytes.fromhex(entry.read_text()), stem)
    return out
