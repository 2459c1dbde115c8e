"""Scans on simulated lines under the mock clock: every meter found, nothing else, no probe
wasted; duplicates, hex digits, resuming a saved scan, progress, several lines at once."""

from __future__ import annotations

import json

import pytest
import trio

from mbusgw.core.frame import ShortFrame
from mbusgw.gateway.meters import AddressingMode
from mbusgw.gateway.scan import (
    DECIMAL,
    HEXADECIMAL,
    FoundMeter,
    PrimaryScan,
    ScanProgress,
    SecondaryScan,
    identity_of,
    scan_lines,
)
from mbusgw.gateway.settings import ConfigError
from mbusgw.gateway.simulator import default_meters, make_meter, random_ids, scan_population


def identities(meters) -> set[tuple[str, str, int, int]]:
    return {
        (m.identity.id, m.identity.manufacturer, m.identity.version, m.identity.medium)
        for m in meters
    }


def found_identities(found: list[FoundMeter]) -> set[tuple[str, str, int, int]]:
    return {
        (f.identity.id, f.identity.manufacturer, f.identity.version, f.identity.medium)
        for f in found
    }


def tree_probes(ids: list[str], alphabet: str, mask: str = "FFFFFFFF") -> int:
    """Probes an ideal collision-driven tree search needs (libmbus' walk): one per mask, and
    the next digit's masks for every mask two or more meters match."""
    matching = [i for i in ids if all(m in ("F", d) for m, d in zip(mask, i, strict=True))]
    if len(matching) < 2 or "F" not in mask:
        return 1
    at = mask.index("F")
    return 1 + sum(
        tree_probes(matching, alphabet, mask[:at] + d + mask[at + 1 :]) for d in alphabet
    )


async def test_primary_scan_finds_each_address_and_reports_a_shared_one(
    sim_bus, autojump_clock
) -> None:
    meters = default_meters(12, seed=3)
    twin = make_meter("kamstrup_382_005", "55555555", primary=3, answer_delay=0.02)
    async with sim_bus([*meters, twin]) as (bus, _):
        scan = await PrimaryScan().run(bus)
    expected = [m for m in meters if m.primary != 3]
    assert found_identities(scan.found) == identities(expected)
    assert {f.primary for f in scan.found} == {m.primary for m in expected}
    assert all(f.mode is AddressingMode.PRIMARY and f.baud == 2400 for f in scan.found)
    assert scan.unresolved == ["primary 3: collision"]
    assert scan.probes == 251 and scan.done == 1.0


@pytest.mark.parametrize("style", ["random", "sequential", "pairs"])
async def test_secondary_scan_finds_every_meter_with_the_fewest_probes(
    sim_bus, autojump_clock, style
) -> None:
    meters = scan_population(60, seed=11, style=style)
    async with sim_bus(meters) as (bus, _):
        scan = await SecondaryScan.start().run(bus)
    assert found_identities(scan.found) == identities(meters)
    assert scan.unresolved == []
    assert scan.probes == tree_probes([m.identity.id for m in meters], DECIMAL)
    # beyond the probes: a read per meter, a confirming selection if it was found under a
    # wildcard, and the reads that showed a clean E5 to be several E5s on top of each other
    extra = scan.requests - scan.probes
    assert len(meters) <= extra <= 2 * len(meters) + scan.probes // 4


async def test_ids_with_hex_digits_need_the_hex_walk(sim_bus, autojump_clock) -> None:
    meters = scan_population(30, seed=5, style="pairs", hex_digits=True)
    assert sum(any(c in "ABCDE" for c in m.identity.id) for m in meters) > 10
    async with sim_bus(meters) as (bus, _):
        scan = await SecondaryScan.start(hex_digits=True).run(bus)
        assert found_identities(scan.found) == identities(meters)
        assert scan.probes == tree_probes([m.identity.id for m in meters], HEXADECIMAL)
        decimal = await SecondaryScan.start().run(bus)
    # a decimal walk finds nothing that is not there, and misses some hex IDs
    assert found_identities(decimal.found) < identities(meters)


async def test_the_same_id_twice_is_told_apart_by_medium(sim_bus, autojump_clock) -> None:
    water = make_meter("EFE_Engelmann-WaterStar", "31415926", seed=1)
    power = make_meter("kamstrup_382_005", "31415926", medium=0x02, seed=2)
    others = scan_population(5, seed=2)
    copy_a = make_meter("GWF-MTKcoder", "27182818", seed=3)
    copy_b = make_meter("GWF-MTKcoder", "27182818", seed=4, answer_delay=0.02)
    async with sim_bus([water, power, *others, copy_a, copy_b]) as (bus, _):
        scan = await SecondaryScan.start().run(bus)
    assert found_identities(scan.found) == identities([water, power, *others])
    # two meters identical in ID, manufacturer, version and medium cannot be told apart
    assert len(scan.unresolved) == 1 and "27182818" in scan.unresolved[0]


async def test_a_saved_scan_resumes_where_it_stopped(sim_bus, autojump_clock) -> None:
    meters = scan_population(25, seed=8, style="pairs")
    async with sim_bus(meters) as (bus, _):
        full = await SecondaryScan.start().run(bus)
        scan = SecondaryScan.start()
        with trio.CancelScope() as scope:
            await scan.run(bus, lambda p: scope.cancel() if p.probes == 40 else None)
        saved = json.dumps(scan.to_dict())
        assert 0 < len(scan.found) < 25 and not scan.finished
        resumed = await SecondaryScan.from_dict(json.loads(saved)).run(bus)
    assert found_identities(resumed.found) == found_identities(full.found)
    assert resumed.probes == full.probes and resumed.done == pytest.approx(1.0)
    assert FoundMeter.from_dict(resumed.found[0].to_dict()) == resumed.found[0]


async def test_progress_is_reported_after_every_probe(sim_bus, autojump_clock) -> None:
    reports: list[ScanProgress] = []
    meters = scan_population(10, seed=3)
    async with sim_bus(meters) as (bus, _):
        scan = await SecondaryScan.start().run(bus, reports.append)
        primary = PrimaryScan(addresses=list(range(10)))
        await primary.run(bus, reports.append)
    secondary = [r for r in reports if r.mode == "secondary"]
    assert len(secondary) == scan.probes
    assert all(a.done <= b.done for a, b in zip(secondary, secondary[1:], strict=False))
    assert secondary[-1].done == pytest.approx(1.0) and secondary[-1].found == 10
    assert secondary[-1].eta == pytest.approx(0.0, abs=1e-6)
    assert all(r.eta is not None and r.eta >= 0 for r in secondary if r.done > 0)
    assert [r.current for r in reports if r.mode == "primary"] == [str(a) for a in range(10)]
    restored = PrimaryScan.from_dict(json.loads(json.dumps(primary.to_dict())))
    assert restored.finished and restored.probes == 10
    with pytest.raises(ConfigError):
        PrimaryScan(addresses=[251])


async def test_several_lines_are_scanned_at_once(sim_bus, autojump_clock) -> None:
    first = scan_population(8, seed=1)
    second = scan_population(8, seed=2)
    async with sim_bus(first) as (bus_a, _), sim_bus(second) as (bus_b, _):
        start = trio.current_time()
        report = await scan_lines([bus_a, bus_b], "secondary")
        both = trio.current_time() - start
        start = trio.current_time()
        await SecondaryScan.start().run(bus_a)
        one = trio.current_time() - start
    assert found_identities(report.found) == identities(first + second)
    assert both < 1.5 * one  # side by side, not one after the other


def test_found_meters_are_ready_for_installation() -> None:
    ids = random_ids(1, seed=1)
    meter = make_meter("GWF-MTKcoder", ids[0], primary=4)
    raw = meter.handle(ShortFrame(0, 0x7B, 4), 0)
    found = FoundMeter(identity_of(raw), AddressingMode.PRIMARY, 4, 2400, "line1", raw)
    assert found.install_row() == {
        "Position": "",
        "SecondaryAddress": ids[0],
        "BaudRate": "2400",
        "AddressingMode": "primary",
        "PrimaryAddress": "4",
        "EnhancedAddress": "",
        "Interface": "line1",
    }
