"""Synthetic but realistic meter data for the store benchmark, generated with numpy.

Three kinds of meter, ten values per reading each, read every 15 minutes:

- heat meters: energy (kWh counter), volume (0.01 m³ counter), power (W), flow (l/h), flow
  and return temperatures (0.1 °C), temperature difference (0.01 K), operating hours, error
  flags (constant), the meter's date and time (a DATETIME value);
- water meters: volume (l counter), flow (l/h), water temperature (0.1 °C), backflow (l,
  rarely moving), operating hours, the billing date (a DATE that changes monthly), status
  flags, a battery-days counter, the set billing volume (constant between billing dates),
  a signal level;
- electricity meters: import and export energy (Wh counters), active power (W), three phase
  voltages (0.1 V), three phase currents (mA).

Consumption follows a daily profile times per-meter size and lognormal noise; temperatures are
slow cycles with small noise; meters are read one after another, so reception times carry the
meter's place in the cycle plus a little jitter, and meter clocks are a few minutes off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mbusgw.gateway.store import SeriesSpec, StoredReading, ValueKind

SLOT = 900
_FRAME_HEAD = bytes.fromhex("68515168080072785634124024010700000000") + bytes(26)
_FRAME_TAIL = b"\x00\x16"
VALUES_PER_READING = 10
DEC, DATE, DATETIME = int(ValueKind.DECIMAL), int(ValueKind.DATE), int(ValueKind.DATETIME)


def _specs(
    names: list[tuple[str, str, int, int]],
) -> tuple[tuple[SeriesSpec, ...], np.ndarray, np.ndarray]:
    specs = tuple(
        SeriesSpec(bytes([0x04, 0x10 + i, 0x80 | i, 0x01]), quantity, unit)
        for i, (quantity, unit, _, _) in enumerate(names)
    )
    kinds = np.array([kind for _, _, kind, _ in names], np.uint8)
    exponents = np.array([exponent for _, _, _, exponent in names], np.int8)
    return specs, kinds, exponents


HEAT = _specs(
    [
        ("energy", "kWh", DEC, 0),
        ("volume", "m³", DEC, -2),
        ("power", "W", DEC, 0),
        ("volume_flow", "m³/h", DEC, -3),
        ("flow_temperature", "°C", DEC, -1),
        ("return_temperature", "°C", DEC, -1),
        ("temperature_difference", "K", DEC, -2),
        ("on_time", "h", DEC, 0),
        ("error_flags", "", DEC, 0),
        ("time_point", "", DATETIME, 0),
    ]
)
WATER = _specs(
    [
        ("volume", "m³", DEC, -3),
        ("volume_flow", "m³/h", DEC, -3),
        ("temperature", "°C", DEC, -1),
        ("backflow_volume", "m³", DEC, -3),
        ("on_time", "h", DEC, 0),
        ("billing_date", "", DATE, 0),
        ("status_flags", "", DEC, 0),
        ("battery_days", "d", DEC, 0),
        ("billing_volume", "m³", DEC, -3),
        ("signal_level", "dBm", DEC, 0),
    ]
)
ELECTRICITY = _specs(
    [
        ("energy_import", "Wh", DEC, 0),
        ("energy_export", "Wh", DEC, 0),
        ("power", "W", DEC, 0),
        ("voltage_l1", "V", DEC, -1),
        ("voltage_l2", "V", DEC, -1),
        ("voltage_l3", "V", DEC, -1),
        ("current_l1", "A", DEC, -3),
        ("current_l2", "A", DEC, -3),
        ("current_l3", "A", DEC, -3),
        ("frequency", "Hz", DEC, -2),
    ]
)


@dataclass(frozen=True)
class Fleet:
    """Readings of ``meters`` meters over ``cycles`` 15-minute cycles from ``start``."""

    names: list[str]
    specs: list[tuple[SeriesSpec, ...]]
    kinds: list[np.ndarray]
    exponents: list[np.ndarray]
    received: np.ndarray  # (meters, cycles) seconds
    meter_time: np.ndarray  # (meters, cycles) seconds
    mantissa: np.ndarray  # (meters, cycles, 10) int64

    @property
    def cycles(self) -> int:
        return self.received.shape[1]

    def cycle(self, c: int, *, frames: bool = True) -> list[StoredReading]:
        """The readings of cycle ``c``, one per meter (columns are views: cheap to build).

        With ``frames``, each reading carries a raw telegram of the median RSP_UD size (87 bytes:
        a long-frame header and the values as 32-bit fields), as the gateway keeps them.
        """
        return [
            StoredReading(
                self.names[m],
                int(self.received[m, c]),
                self.specs[m],
                self.kinds[m],
                self.mantissa[m, c],
                self.exponents[m],
                meter_time=int(self.meter_time[m, c]),
                frames=(_FRAME_HEAD + self.mantissa[m, c].astype("<u4").tobytes() + _FRAME_TAIL,)
                if frames
                else (),
                duration_ms=431,
                status_byte=0,
            )
            for m in range(len(self.names))
        ]


def _profile(t: np.ndarray) -> np.ndarray:
    """Daily load profile in [0.3, 1.3]: low at night, morning and evening peaks."""
    hour = (t % 86_400) / 3600
    return 0.8 + 0.3 * np.sin((hour - 6) / 24 * 2 * np.pi) + 0.2 * np.exp(-((hour - 19) ** 2) / 4)


def make_fleet(meters: int, cycles: int, start: int, seed: int = 1) -> Fleet:
    rng = np.random.default_rng(seed)
    slot_start = start + SLOT * np.arange(cycles, dtype=np.int64)
    place = (np.arange(meters) * 0.45).astype(np.int64)  # one meter after another at 2400 Bd
    jitter = rng.integers(0, 3, (meters, cycles))
    received = slot_start[None, :] + place[:, None] + jitter
    clock_offset = rng.integers(-300, 300, meters)
    meter_time = (received + clock_offset[:, None]) // 60 * 60
    profile = _profile(slot_start.astype(float))
    kinds_of = rng.choice(3, meters, p=[0.5, 0.3, 0.2])
    mantissa = np.zeros((meters, cycles, VALUES_PER_READING), np.int64)
    for kind, make in enumerate((_heat, _water, _electricity)):
        rows = np.flatnonzero(kinds_of == kind)
        if len(rows):
            mantissa[rows] = make(rng, len(rows), cycles, profile, slot_start, meter_time[rows])
    table = (HEAT, WATER, ELECTRICITY)
    return Fleet(
        [f"{10_000_000 + m:08d}" for m in range(meters)],
        [table[k][0] for k in kinds_of],
        [table[k][1] for k in kinds_of],
        [table[k][2] for k in kinds_of],
        received,
        meter_time,
        mantissa,
    )


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    return rng.lognormal(0.0, sigma, shape)


def _counter(start: np.ndarray, increments: np.ndarray) -> np.ndarray:
    return start[:, None] + np.cumsum(increments, axis=1).astype(np.int64)


def _slow(rng, n: int, cycles: int, base: float, swing: float, noise: float, t: np.ndarray):
    phase = rng.uniform(0, 2 * np.pi, n)[:, None]
    cycle = np.sin((t % 86_400) / 86_400 * 2 * np.pi + phase)
    return base + swing * cycle + rng.normal(0, noise, (n, cycles))


def _heat(rng, n, cycles, profile, t, meter_time) -> np.ndarray:
    size = rng.uniform(3_000, 40_000, n)[:, None]  # W
    power = (size * profile[None, :] * _noise(rng, (n, cycles), 0.25)).astype(np.int64)
    energy_wh = np.cumsum(power // 4, axis=1) + rng.integers(10**6, 10**8, n)[:, None] * 1000
    dt_k = _slow(rng, n, cycles, 25.0, 5.0, 0.3, t)
    flow_lph = power / (1.163 * dt_k)
    flow_t = _slow(rng, n, cycles, 65.0, 4.0, 0.2, t)
    return np.stack(
        [
            energy_wh // 1000,
            _counter(rng.integers(10**4, 10**6, n), flow_lph / 4 / 10).astype(np.int64),
            power,
            (flow_lph).astype(np.int64),
            (flow_t * 10).astype(np.int64),
            ((flow_t - dt_k) * 10).astype(np.int64),
            (dt_k * 100).astype(np.int64),
            rng.integers(10_000, 80_000, n)[:, None] + np.arange(cycles)[None, :] // 4,
            np.zeros((n, cycles), np.int64),
            meter_time,
        ],
        axis=2,
    )


def _water(rng, n, cycles, profile, t, meter_time) -> np.ndarray:
    use = rng.uniform(2, 40, n)[:, None] * profile[None, :] * _noise(rng, (n, cycles), 0.8)
    use = np.where(rng.random((n, cycles)) < 0.4, 0.0, use)  # many quiet quarters
    day = t // 86_400
    billing = (day - day % 30) * 86_400
    volume = _counter(rng.integers(10**5, 10**7, n), use).astype(np.int64)
    return np.stack(
        [
            volume,
            (use * 4).astype(np.int64),
            (_slow(rng, n, cycles, 12.0, 1.5, 0.1, t) * 10).astype(np.int64),
            np.broadcast_to(rng.integers(0, 500, n)[:, None], (n, cycles)),
            rng.integers(1_000, 50_000, n)[:, None] + np.arange(cycles)[None, :] // 4,
            np.broadcast_to(billing[None, :], (n, cycles)),
            np.zeros((n, cycles), np.int64),
            rng.integers(100, 3_000, n)[:, None] + np.arange(cycles)[None, :] // 96,
            volume[:, :1] - volume[:, :1] % 1000 + (billing[None, :] - billing[0]) // 86_400,
            rng.integers(-95, -60, n)[:, None] + rng.integers(-2, 3, (n, cycles)),
        ],
        axis=2,
    )


def _electricity(rng, n, cycles, profile, t, meter_time) -> np.ndarray:
    size = rng.uniform(500, 30_000, n)[:, None]
    power = (size * profile[None, :] * _noise(rng, (n, cycles), 0.35)).astype(np.int64)
    solar = np.where(rng.random(n) < 0.3, 1, 0)[:, None]
    midday = np.clip(np.sin(((t % 86_400) / 3600 - 6) / 12 * np.pi), 0, None)[None, :]
    export = (solar * 3_000 * midday * _noise(rng, (n, cycles), 0.3)).astype(np.int64)
    volts = [(_slow(rng, n, cycles, 230.0, 2.0, 0.8, t) * 10).astype(np.int64) for _ in range(3)]
    amps = [
        (power / 3 / 230 * 1000 * _noise(rng, (n, cycles), 0.1)).astype(np.int64) for _ in range(3)
    ]
    return np.stack(
        [
            _counter(rng.integers(10**6, 10**9, n), power / 4),
            _counter(rng.integers(0, 10**7, n), export / 4),
            power,
            *volts,
            *amps,
            5000 + rng.integers(-3, 4, (n, cycles)),
        ],
        axis=2,
    )
