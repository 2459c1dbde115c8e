"""What a caller asks of the bus and gets back: how a meter is reached (``MeterAddress`` and the
protocol's ``Target``s for it), how it is read (``ReadSettings``), and the gateway's error for a
job the protocol gave up. The raw reading (``ReadReply``) is in ``gateway.replies``."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mbusgw.core.busproto import COLLISION, NO_RESPONSE, NOISY, Failed, Target
from mbusgw.core.frame import select_secondary
from mbusgw.gateway.bustiming import Timing
from mbusgw.gateway.errors import BusError, Collision, LineNoisy, NoResponse
from mbusgw.gateway.meters import AddressingMode, MultiTelegram
from mbusgw.gateway.settings import ConfigError
from mbusgw.gateway.transport import check_baudrate


@dataclass(frozen=True)
class MeterAddress:
    """How a meter can be reached. ``secondary`` is the 8-digit identification number."""

    primary: int | None = None
    secondary: str | None = None
    manufacturer: str | None = None
    version: int | None = None
    medium: int | None = None
    fabrication: str | None = None

    def __post_init__(self) -> None:
        if self.primary is not None and not 0 <= self.primary <= 250:
            raise ConfigError({"primary_address": f"{self.primary} is outside 0-250"})
        for name in ("secondary", "fabrication"):
            value = getattr(self, name)
            if value is not None and (
                len(value) != 8 or any(c not in "0123456789ABCDEFabcdef" for c in value)
            ):
                raise ConfigError({f"{name}_address": f"{value!r} is not 8 hexadecimal digits"})

    def supports(self, mode: AddressingMode) -> bool:
        if mode is AddressingMode.PRIMARY:
            return self.primary is not None
        if mode is AddressingMode.SECONDARY:
            return self.secondary is not None
        return self.secondary is not None and self.fabrication is not None

    def label(self, mode: AddressingMode | None = None) -> str:
        if mode is AddressingMode.PRIMARY or (mode is None and self.secondary is None):
            return f"primary {self.primary}"
        return f"secondary {self.secondary}"


@dataclass(frozen=True)
class ReadSettings:
    """How to read one meter (the per-meter settings of SPEC §1.3). ``timing``/``follow_up``
    None: the bus's timing; ``follow_up`` applies to the second and later telegrams."""

    modes: tuple[AddressingMode, ...] = (AddressingMode.PRIMARY,)
    multi_telegram: MultiTelegram = MultiTelegram.AUTO
    telegram_limit: int = 10
    init: bool = True  # SND_NKE before a primary read (resets the meter's telegram sequence)
    baud: int | None = None  # switch the line to this rate for the read
    timing: Timing | None = None
    follow_up: Timing | None = None

    def __post_init__(self) -> None:
        if not self.modes:
            raise ConfigError({"addressing_mode": "at least one addressing mode is needed"})
        if not 1 <= self.telegram_limit <= 64:
            raise ConfigError({"multi_telegram_limit": "must be between 1 and 64"})
        if self.baud is not None:
            check_baudrate(self.baud)


def failure_error(failed: Failed) -> BusError:
    """The gateway's error for a job the protocol gave up."""
    if failed.kind == NO_RESPONSE:
        return NoResponse(failed.label, failed.attempts)
    if failed.kind == NOISY:
        return LineNoisy(failed.label, failed.attempts, failed.detail)
    if failed.kind == COLLISION:
        return Collision(failed.label, failed.attempts, failed.detail)
    return BusError(f"{failed.label}: {failed.detail}")


@functools.lru_cache(maxsize=4096)
def targets(address: MeterAddress, modes: tuple[AddressingMode, ...]) -> tuple[Target, ...]:
    """The ways to reach ``address`` with ``modes``, in order (ConfigError: none); kept, as a
    meter is read with the same ones again and again."""
    found = []
    primary_key = None if address.primary is None else (AddressingMode.PRIMARY, address.primary)
    for mode in modes:
        if not address.supports(mode):
            continue
        label = address.label(mode)
        if mode is AddressingMode.PRIMARY:
            found.append(Target(mode, primary_key, label, address.primary, None, primary_key))
            continue
        selection = select_secondary(
            address.secondary or "",
            address.manufacturer,
            address.version,
            address.medium,
            address.fabrication if mode is AddressingMode.ESECONDARY else None,
        )
        key = (mode, address.secondary)
        found.append(Target(mode, key, label, None, selection, primary_key))
    if not found:
        raise ConfigError({"address": f"{address} has no address for {modes}"})
    return tuple(found)
