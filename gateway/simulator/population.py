"""Sets of simulated meters: the default mix a new installation sees, and populations for scans
(random, sequential, or pairs sharing all but the last digit)."""

from __future__ import annotations

import random

from mbusgw.core.frame import manufacturer_letters
from mbusgw.gateway.simulator.meter import HEX_DIGITS, SimMeter
from mbusgw.gateway.simulator.telegrams import Evolution, Identity, Template, bundled_templates

# Templates of meters that send their records in several telegrams, and how many.
MULTI_TELEGRAM = {"ELV-Elvaco-CMa10": 2, "svm_f22_telegram1": 3, "abb_delta": 3}
MEDIAN_TEMPLATE = "EFE_Engelmann-WaterStar"  # 87 bytes: the median RSP_UD of the libmbus corpus


def make_meter(
    template: str | Template,
    id: str,
    *,
    manufacturer: str | None = None,
    version: int | None = None,
    medium: int | None = None,
    primary: int | None = None,
    telegrams: int = 1,
    answer_delay: float | None = None,
    answer_jitter: float = 0.0,
    baud: int | None = None,
    fabrication: str | None = None,
    seed: int = 0,
) -> SimMeter:
    """A meter from a template (a bundled name or a ``Template``) with its own identity."""
    if isinstance(template, str):
        template = bundled_templates()[template]
    rng = random.Random(seed)
    identity = Identity(
        id.upper(),
        manufacturer or manufacturer_letters(template.manufacturer),
        template.version if version is None else version,
        template.medium if medium is None else medium,
    )
    evolution = Evolution(
        rate=rng.uniform(0.002, 0.05),
        phase=rng.uniform(0, 6.283),
        age=rng.uniform(0, 3 * 365 * 86400),  # in service for up to three years
    )
    return SimMeter(
        template,
        identity,
        primary=primary,
        fabrication=fabrication,
        telegrams=telegrams,
        baud=baud,
        answer_delay=answer_delay,
        answer_jitter=answer_jitter,
        evolution=evolution,
        access=rng.randrange(256),
        seed=seed,
    )


def random_ids(
    count: int, *, seed: int = 0, style: str = "random", hex_digits: bool = False
) -> list[str]:
    """``count`` distinct 8-digit IDs: ``random``, ``sequential`` (one delivery batch) or
    ``pairs`` (two by two sharing the first seven digits: the costly case for a tree search).
    With ``hex_digits`` some IDs carry a digit A-E, as some manufacturers print them."""
    rng = random.Random(seed)
    alphabet = HEX_DIGITS if hex_digits else HEX_DIGITS[:10]
    ids: list[str] = []
    seen: set[str] = set()
    if style == "sequential":
        first = rng.randrange(10_000_000, 99_999_999 - count)
        return [f"{first + k:08d}" for k in range(count)]
    while len(ids) < count:
        stem = "".join(rng.choice(alphabet) for _ in range(8))
        group = [stem]
        if style == "pairs":
            other = rng.choice([d for d in alphabet if d != stem[-1]])
            group.append(stem[:-1] + other)
        elif style != "random":
            raise ValueError(f"unknown ID style {style!r}")
        for ident in group:
            if ident not in seen and len(ids) < count:
                seen.add(ident)
                ids.append(ident)
    return ids


def scan_population(
    count: int,
    *,
    seed: int = 0,
    style: str = "random",
    hex_digits: bool = False,
    template: str = MEDIAN_TEMPLATE,
    answer_delay: float | None = None,
    answer_jitter: float = 0.001,
) -> list[SimMeter]:
    """Meters for a secondary scan: distinct IDs, no primary addresses, all of one model (the
    hard case: their answers start nearly together)."""
    return [
        make_meter(
            template, ident, seed=seed + k, answer_delay=answer_delay, answer_jitter=answer_jitter
        )
        for k, ident in enumerate(random_ids(count, seed=seed, style=style, hex_digits=hex_digits))
    ]


def default_meters(count: int = 12, *, seed: int = 1) -> list[SimMeter]:
    """A realistic mix: heat, water, electricity and gas meters from real frames, primary
    addresses 1…count (up to 250), random IDs of which every fifth has a hex digit, the
    multi-telegram meters among them, and answer delays between 11 bit times and 40 ms."""
    rng = random.Random(seed)
    names = sorted(bundled_templates())
    ids = random_ids(count, seed=seed)
    meters = []
    for k in range(count):
        name = names[k % len(names)]
        ident = ids[k]
        if k % 5 == 4:
            position = rng.randrange(8)
            ident = ident[:position] + rng.choice("ABCDE") + ident[position + 1 :]
        meters.append(
            make_meter(
                name,
                ident,
                primary=k + 1 if k < 250 else None,
                telegrams=MULTI_TELEGRAM.get(name, 1),
                answer_delay=None if k % 2 == 0 else rng.uniform(0.005, 0.040),
                answer_jitter=0.002,
                fabrication=f"{rng.randrange(10**8):08d}",
                seed=seed * 1000 + k,
            )
        )
    return meters
