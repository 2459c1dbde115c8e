"""Simulated wireless M-Bus meters and the radio field between them and the receivers.

A ``RadioMeter`` sends an SND_NR telegram (C 0x44) every ``interval`` seconds, with a short
transport header (CI 0x7A) and the records of a real wired frame (``telegrams.Template``), their
live values animated as on the wired simulator. With a key it encrypts in security mode 5
(AES-128-CBC, IV = M ‖ A ‖ ACC × 8, the payload opened by 2F2F and padded with 2F), as OMS
meters do. Telegrams are given as a receiver stick delivers them: L-field first, no block CRCs.

The ``RadioField`` says how strongly each receiver hears each meter (dBm, with a little noise
per telegram; None or below ``SENSITIVITY`` = not heard), and can be changed while it runs (a
meter moved, a receiver added). ``default_field`` is the embedded default's field: a few
meters between the receivers, every second one encrypted, and one neighbour's meter that is
heard but not part of the installation (its key is unknown).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mbusgw.core.crypto import AesKey
from mbusgw.core.frame import manufacturer_code, manufacturer_letters
from mbusgw.core.wmbus import MeterId
from mbusgw.gateway.simulator.population import random_ids
from mbusgw.gateway.simulator.telegrams import (
    Evolution,
    Identity,
    Template,
    bundled_templates,
    render_records,
)

SND_NR = 0x44
CI_SHORT_TPL = 0x7A
PLAIN_MARK = b"\x2f\x2f"
SENSITIVITY = -105.0  # dBm: weaker telegrams are not received
NOISE_DB = 1.0  # each telegram arrives within ±1 dB of the field's level
# Small frames of different media (heat, warm water, electricity, water, heat, water).
WIRELESS_TEMPLATES = (
    "SEN_Sensus-PolluTherm",
    "EFE_Engelmann-WaterStar",
    "kamstrup_382_005",
    "els_falcon",
    "example_data_01",
    "GWF-MTKcoder",
)


def cbc_encrypt(key: AesKey, iv: bytes, plain: bytes) -> bytes:
    """AES-128-CBC of whole blocks from the key's raw block cipher (a meter's side)."""
    out = bytearray()
    previous = iv
    for start in range(0, len(plain), 16):
        block = bytes(a ^ b for a, b in zip(plain[start : start + 16], previous, strict=True))
        previous = key.encrypt_blocks(block)
        out += previous
    return bytes(out)


@dataclass(frozen=True)
class RadioMeter:
    template: Template
    identity: Identity
    interval: float  # seconds between telegrams
    phase: float  # the first telegram this many seconds after the field starts
    evolution: Evolution
    key: AesKey | None = field(default=None, repr=False)  # mode 5 when set
    installed: bool = True  # part of the installation (a neighbour's meter is not)

    @property
    def meter_id(self) -> MeterId:
        identity = self.identity
        return MeterId(identity.manufacturer, identity.id, identity.version, identity.medium)

    @property
    def address(self) -> bytes:
        """M ‖ ID ‖ version ‖ device type as sent (the DLL address)."""
        identity = self.identity
        return (
            manufacturer_code(identity.manufacturer).to_bytes(2, "little")
            + bytes.fromhex(identity.id)[::-1]
            + bytes((identity.version, identity.medium))
        )

    def telegram(self, t: float, access: int) -> bytes:
        """The telegram sent at ``t`` seconds after the field started."""
        records = bytes(render_records(self.template.records, t, self.evolution))
        if self.key is None:
            configuration = 0
            payload = records
        else:
            plain = PLAIN_MARK + records
            plain += b"\x2f" * (-len(plain) % 16)
            configuration = 0x0500 | (len(plain) // 16) << 4
            payload = cbc_encrypt(self.key, self.address + bytes((access,)) * 8, plain)
        body = (
            bytes((SND_NR,))
            + self.address
            + bytes((CI_SHORT_TPL, access, 0x00))
            + configuration.to_bytes(2, "little")
            + payload
        )
        return bytes((len(body),)) + body


class RadioField:
    """Meters, receivers and the signal level of each meter at each receiver."""

    def __init__(
        self,
        meters: list[RadioMeter],
        levels: dict[tuple[str, str], float | None],
        *,
        seed: int = 1,
    ) -> None:
        self.meters = list(meters)
        self._levels = dict(levels)  # (meter id, receiver) → dBm
        self._rng = random.Random(seed)
        self._access = {meter.identity.id: self._rng.randrange(256) for meter in meters}

    def level(self, meter: str, receiver: str) -> float | None:
        return self._levels.get((meter, receiver))

    def set_level(self, meter: str, receiver: str, dbm: float | None) -> None:
        """Move a meter: its level at ``receiver`` from now on (None: out of range)."""
        self._levels[(meter, receiver)] = dbm

    def strongest(self, meter: str, receivers: list[str]) -> str | None:
        """The receiver with the highest level for ``meter`` (what an installer measures)."""
        heard = [(level, name) for name in receivers if (level := self.level(meter, name))]
        heard = [(level, name) for level, name in heard if level >= SENSITIVITY]
        return max(heard)[1] if heard else None

    def transmit(
        self, meter: RadioMeter, t: float, receivers: list[str]
    ) -> list[tuple[str, bytes, float]]:
        """One telegram of ``meter``: ``(receiver, telegram, dBm)`` per receiver hearing it."""
        ident = meter.identity.id
        access = self._access[ident] = (self._access[ident] + 1) & 0xFF
        telegram = meter.telegram(t, access)
        out = []
        for name in receivers:
            level = self.level(ident, name)
            if level is None:
                continue
            heard = level + self._rng.uniform(-NOISE_DB, NOISE_DB)
            if heard >= SENSITIVITY:
                out.append((name, telegram, round(heard, 1)))
        return out

    def installer_keys(self) -> list[tuple[MeterId, AesKey]]:
        """The keys of the installed encrypted meters (what the installer was given)."""
        return [(m.meter_id, m.key) for m in self.meters if m.installed and m.key is not None]


def default_field(
    receivers: list[str], meters: int = 4, *, interval: float = 30.0, seed: int = 1
) -> RadioField:
    """``meters`` installed meters spread between the receivers (each heard best by the
    nearest), every second one in mode 5, plus one neighbour's encrypted meter heard weakly."""
    rng = random.Random(seed)
    templates = bundled_templates()
    ids = random_ids(meters + 1, seed=seed + 7000)
    spread = max(len(receivers) - 1, 1)
    radio: list[RadioMeter] = []
    levels: dict[tuple[str, str], float | None] = {}
    for k in range(meters + 1):
        template = templates[WIRELESS_TEMPLATES[k % len(WIRELESS_TEMPLATES)]]
        neighbour = k == meters
        identity = Identity(
            ids[k], manufacturer_letters(template.manufacturer), template.version, template.medium
        )
        key = AesKey(rng.randbytes(16)) if k % 2 == 1 or neighbour else None
        radio.append(
            RadioMeter(
                template,
                identity,
                interval=interval * rng.uniform(0.9, 1.1),
                phase=interval * (k + 1) / (meters + 2),
                evolution=Evolution(rate=rng.uniform(0.002, 0.05), age=rng.uniform(0, 9e7)),
                key=key,
                installed=not neighbour,
            )
        )
        where = k / max(meters - 1, 1) * spread
        for index, name in enumerate(receivers):
            level = -95.0 if neighbour else -55.0 - 25.0 * abs(where - index)
            levels[(ids[k], name)] = level
    return RadioField(radio, levels, seed=seed)
