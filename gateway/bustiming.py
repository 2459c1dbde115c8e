"""The bus timing of SPEC table 8: ``Timing`` as the settings give it, and ``LineTimes``, the
same resolved for one baud rate as the exchange protocol uses it."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields

from mbusgw.gateway.settings import ConfigError, LineTiming

COLLISION_QUIET_CHARS = 20
BITS_PER_CHAR = 11


@dataclass(frozen=True)
class Timing:
    """SPEC table 8. Times in seconds. ``None`` derives the value from the baud rate:
    ``response_timeout`` = 330 bit times + 50 ms (EN 13757-2), ``inter_frame_gap`` = 11 bit
    times, ``collision_recovery`` = 20 characters. After a garbled answer the master sends
    again only once the line has been silent for the collision recovery time: meters talking
    over each other can hold the line low (a break) for several characters, and the garble
    must be over before the next request. ``latency`` is what the converter or USB adapter
    may add (waited for in addition, and allowed as jitter between the characters of one
    answer)."""

    response_timeout: float | None = None
    read_attempts: int = 3
    select_attempts: int = 3
    wait_after_init: float = 0.0
    collision_recovery: float | None = None
    inter_frame_gap: float | None = None
    latency: float = 0.015

    def __post_init__(self) -> None:
        for name in ("read_attempts", "select_attempts"):
            if not 1 <= getattr(self, name) <= 10:
                raise ConfigError({f"timing.{name}": "must be between 1 and 10"})
        for name in ("response_timeout", "wait_after_init", "collision_recovery"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 60:
                raise ConfigError({f"timing.{name}": "must be between 0 and 60 s"})
        if self.inter_frame_gap is not None and not 0 <= self.inter_frame_gap <= 10:
            raise ConfigError({"timing.inter_frame_gap": "must be between 0 and 10 s"})
        if not 0 <= self.latency <= 5:
            raise ConfigError({"timing.latency": "must be between 0 and 5 s"})

    @classmethod
    def from_settings(cls, line: LineTiming, overrides: dict[str, float] | None = None) -> Timing:
        """From the stored settings (table 8 in ms, retries counted after the first try), with
        a meter's overrides (same field names) applied; 0 ms timeout/gap = derived."""
        return _timing_from_settings(line, tuple(sorted((overrides or {}).items())))


@functools.lru_cache(maxsize=1024)
def _timing_from_settings(line: LineTiming, overrides: tuple[tuple[str, float], ...]) -> Timing:
    """One ``Timing`` per distinct setting (the meters of a line mostly share one)."""
    values = {**asdict(line), **dict(overrides)}
    unknown = set(values) - {f.name for f in fields(LineTiming)}
    if unknown:
        raise ConfigError({f"timing.{name}": "unknown setting" for name in sorted(unknown)})
    return Timing(
        response_timeout=values["response_timeout_ms"] / 1000 or None,
        read_attempts=int(values["read_retries"]) + 1,
        select_attempts=int(values["select_retries"]) + 1,
        wait_after_init=values["wait_after_init_ms"] / 1000,
        collision_recovery=values["collision_recovery_ms"] / 1000 or None,
        inter_frame_gap=values["inter_frame_gap_ms"] / 1000 or None,
    )


def response_bound(baud: int) -> float:
    """EN 13757-2: the latest a slave may start its answer after the request, 330 bit + 50 ms."""
    return 330 / baud + 0.050


@dataclass(frozen=True)
class LineTimes:
    """``Timing`` resolved for one baud rate."""

    char: float  # one character: 11 bit times
    response: float
    latency: float
    gap: float
    recovery: float
    after_init: float
    read_attempts: int
    select_attempts: int

    @property
    def char_gap(self) -> float:
        """Silence that ends an answer: no pauses are allowed inside a telegram."""
        return 2 * self.char + self.latency

    @property
    def no_answer(self) -> float:
        """From the end of the request until silence means "no answer"."""
        return self.response + self.char + self.latency


@functools.lru_cache(maxsize=256)
def resolve(timing: Timing, baud: int) -> LineTimes:
    char = BITS_PER_CHAR / baud
    return LineTimes(
        char=char,
        response=(
            response_bound(baud) if timing.response_timeout is None else timing.response_timeout
        ),
        latency=timing.latency,
        gap=char if timing.inter_frame_gap is None else timing.inter_frame_gap,
        recovery=(
            COLLISION_QUIET_CHARS * char
            if timing.collision_recovery is None
            else timing.collision_recovery
        ),
        after_init=timing.wait_after_init,
        read_attempts=timing.read_attempts,
        select_attempts=timing.select_attempts,
    )
