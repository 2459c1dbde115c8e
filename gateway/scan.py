"""Finding the meters on a line: primary scan (addresses 0-250) and secondary wildcard search.

The secondary search is a depth-first walk of the ID space driven by collisions: a selection
with wildcards (``F``) that nobody answers settles that whole part of the space in one probe, a
single clean answer is a meter, and a garbled answer (several meters) splits the mask on its
next wildcard digit (0-9, or 0-9 and A-E when IDs with hex digits are expected). No probe is
tried twice. Two meters with the same ID are told apart by medium, then by version; what still
collides then is reported as unresolved. The walk is a ``SecondaryScan`` state object: save it
with ``to_dict`` and resume later with ``from_dict``.

Progress (found, probes, share of the space settled, estimated time left) goes to an optional
callback after every probe. Found meters carry their identity from the telegram they sent. A
``Quota`` (the advanced search's number of meters expected, manual 6.21) ends the scans of a
search once that many different meters are found, on whichever lines and rates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import trio

from mbusgw.core import decode
from mbusgw.core.busproto import Outcome, ProbeKind
from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.meters import AddressingMode
from mbusgw.gateway.settings import ConfigError

DECIMAL = "0123456789"
HEXADECIMAL = "0123456789ABCDE"  # F is the wildcard: an ID digit F cannot be selected


@dataclass(frozen=True)
class MeterIdentity:
    id: str  # 8 digits as printed on the meter
    manufacturer: str  # three letters
    version: int
    medium: int


def identity_of(frame: bytes) -> MeterIdentity:
    """The identity in a telegram's header, through the record decoder."""
    header = decode(frame).header
    return MeterIdentity(header.id, header.manufacturer, header.version, header.medium)


@dataclass(frozen=True)
class FoundMeter:
    identity: MeterIdentity
    mode: AddressingMode  # how the scan reached it
    primary: int | None  # the primary address it answered at (primary scan)
    baud: int
    interface: str
    frame: bytes  # the telegram it answered with

    def install_row(self) -> dict[str, str]:
        """The meter as a row of the meter list CSV (SPEC §1.2, table 5)."""
        return {
            "Position": "",
            "SecondaryAddress": self.identity.id,
            "BaudRate": str(self.baud),
            "AddressingMode": self.mode.value,
            "PrimaryAddress": "" if self.primary is None else str(self.primary),
            "EnhancedAddress": "",
            "Interface": self.interface,
        }

    def to_dict(self) -> dict:
        return {
            **asdict(self.identity),
            "mode": self.mode.value,
            "primary": self.primary,
            "baud": self.baud,
            "interface": self.interface,
            "frame": self.frame.hex(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> FoundMeter:
        identity = MeterIdentity(data["id"], data["manufacturer"], data["version"], data["medium"])
        return cls(
            identity,
            AddressingMode(data["mode"]),
            data["primary"],
            data["baud"],
            data["interface"],
            bytes.fromhex(data["frame"]),
        )


@dataclass(frozen=True)
class ScanProgress:
    interface: str
    baud: int
    mode: str
    found: int
    probes: int
    done: float  # share of the address or ID space settled, 0-1
    elapsed: float
    eta: float | None  # seconds left, estimated from the pace so far
    current: str


ProgressCallback = Callable[[ScanProgress], None]
FoundCallback = Callable[["FoundMeter"], None]
"""Told of each meter a scan finds, the moment it is found (once per scan)."""


def _eta(elapsed: float, done: float) -> float | None:
    if done <= 0:
        return None
    return elapsed * (1 - done) / done


@dataclass
class Quota:
    """The number of meters a search is to find; shared by all its scans, which stop before
    their next probe once it is met. Meters are counted once however often they answer."""

    wanted: int
    seen: set[MeterIdentity] = field(default_factory=set)

    def count(self, meter: FoundMeter) -> None:
        self.seen.add(meter.identity)

    @property
    def met(self) -> bool:
        return len(self.seen) >= self.wanted


def _stop(quota: Quota | None) -> bool:
    return quota is not None and quota.met


@dataclass
class _Node:
    mask: str
    medium: int | None = None
    version: int | None = None
    weight: float = 1.0  # share of the ID space below this node


@dataclass
class ScanState:
    """Common bookkeeping of both scans (serialisable)."""

    found: list[FoundMeter] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    probes: int = 0
    requests: int = 0
    elapsed: float = 0.0
    done: float = 0.0

    def _add(self, meter: FoundMeter, quota: Quota | None, found: FoundCallback | None) -> bool:
        if quota is not None:
            quota.count(meter)
        if any(m.identity == meter.identity for m in self.found):
            return False
        self.found.append(meter)
        if found is not None:
            found(meter)
        return True

    def _base_dict(self) -> dict:
        return {
            "found": [m.to_dict() for m in self.found],
            "unresolved": list(self.unresolved),
            "probes": self.probes,
            "requests": self.requests,
            "elapsed": self.elapsed,
            "done": self.done,
        }

    def _load_base(self, data: dict) -> None:
        self.found = [FoundMeter.from_dict(m) for m in data["found"]]
        self.unresolved = list(data["unresolved"])
        self.probes = data["probes"]
        self.requests = data["requests"]
        self.elapsed = data["elapsed"]
        self.done = data["done"]


@dataclass
class PrimaryScan(ScanState):
    addresses: list[int] = field(default_factory=lambda: list(range(251)))
    next_index: int = 0

    def __post_init__(self) -> None:
        if not self.addresses or any(not 0 <= a <= 250 for a in self.addresses):
            raise ConfigError({"addresses": "primary addresses are 0-250"})

    @property
    def finished(self) -> bool:
        return self.next_index >= len(self.addresses)

    def to_dict(self) -> dict:
        return {
            "kind": "primary",
            "addresses": self.addresses,
            "next_index": self.next_index,
            **self._base_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> PrimaryScan:
        scan = cls(addresses=list(data["addresses"]), next_index=data["next_index"])
        scan._load_base(data)
        return scan

    async def run(
        self,
        bus: BusMaster,
        progress: ProgressCallback | None = None,
        quota: Quota | None = None,
        found: FoundCallback | None = None,
    ) -> PrimaryScan:
        """Probe the remaining addresses (resumes where a saved state stopped); stops early
        once ``quota`` is met."""
        baud = bus.transport.baudrate
        while not self.finished and not _stop(quota):
            address = self.addresses[self.next_index]
            begun = trio.current_time()
            probe = await bus.probe_primary(address)
            self.probes += 1
            self.requests += probe.requests
            if probe.kind is ProbeKind.FOUND and probe.frame is not None:
                identity = identity_of(probe.frame)
                meter = FoundMeter(
                    identity, AddressingMode.PRIMARY, address, baud, bus.name, probe.frame
                )
                self._add(meter, quota, found)
            elif probe.kind in (ProbeKind.COLLISION, ProbeKind.UNREADABLE):
                self.unresolved.append(f"primary {address}: {probe.kind.value}")
            self.next_index += 1
            self.done = self.next_index / len(self.addresses)
            self.elapsed += trio.current_time() - begun
            if progress is not None:
                progress(self._progress(bus.name, baud, str(address)))
        return self

    def _progress(self, interface: str, baud: int, current: str) -> ScanProgress:
        return ScanProgress(
            interface,
            baud,
            "primary",
            len(self.found),
            self.probes,
            self.done,
            self.elapsed,
            _eta(self.elapsed, self.done),
            current,
        )


@dataclass
class SecondaryScan(ScanState):
    alphabet: str = DECIMAL
    manufacturer: str | None = None
    pending: list[_Node] = field(default_factory=lambda: [_Node("FFFFFFFF")])

    @classmethod
    def start(cls, *, hex_digits: bool = False, manufacturer: str | None = None) -> SecondaryScan:
        return cls(alphabet=HEXADECIMAL if hex_digits else DECIMAL, manufacturer=manufacturer)

    @property
    def finished(self) -> bool:
        return not self.pending

    def to_dict(self) -> dict:
        return {
            "kind": "secondary",
            "alphabet": self.alphabet,
            "manufacturer": self.manufacturer,
            "pending": [asdict(node) for node in self.pending],
            **self._base_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SecondaryScan:
        scan = cls(
            alphabet=data["alphabet"],
            manufacturer=data["manufacturer"],
            pending=[_Node(**node) for node in data["pending"]],
        )
        scan._load_base(data)
        return scan

    def _split(self, node: _Node) -> list[_Node] | None:
        """The children of a colliding node, in probing order; None if it cannot be split."""
        if "F" in node.mask:
            at = node.mask.index("F")
            masks = [node.mask[:at] + digit + node.mask[at + 1 :] for digit in self.alphabet]
            weight = node.weight / len(masks)
            return [_Node(m, node.medium, node.version, weight) for m in masks]
        # The same ID twice: different media, then versions? (0xFF is the wildcard itself.)
        if node.medium is None:
            return [_Node(node.mask, m, node.version, node.weight / 255) for m in range(255)]
        if node.version is None:
            return [_Node(node.mask, node.medium, v, node.weight / 255) for v in range(255)]
        return None

    async def _confirm(self, bus: BusMaster, identity: MeterIdentity) -> bool:
        """Select the meter a wildcard probe found by its exact identity. Nearly identical
        telegrams of two meters answering in the same bit time can merge into a valid frame
        of a meter that does not exist; only a real meter acknowledges its own address."""
        self.requests += 1
        exchange = await bus.select(
            identity.id, identity.manufacturer, identity.version, identity.medium
        )
        return exchange.outcome is Outcome.ANSWER

    async def run(
        self,
        bus: BusMaster,
        progress: ProgressCallback | None = None,
        quota: Quota | None = None,
        found: FoundCallback | None = None,
    ) -> SecondaryScan:
        baud = bus.transport.baudrate
        while self.pending and not _stop(quota):
            node = self.pending[-1]  # taken off only once probed: a cancelled probe is redone
            begun = trio.current_time()
            probe = await bus.probe_secondary(
                node.mask, self.manufacturer, node.version, node.medium
            )
            self.pending.pop()
            self.probes += 1
            self.requests += probe.requests
            settled = True
            kind = probe.kind
            if kind is ProbeKind.FOUND and probe.frame is not None:
                identity = identity_of(probe.frame)
                if "F" in node.mask and not await self._confirm(bus, identity):
                    kind = ProbeKind.COLLISION
                else:
                    mode = AddressingMode.SECONDARY
                    meter = FoundMeter(identity, mode, None, baud, bus.name, probe.frame)
                    self._add(meter, quota, found)
            if kind in (ProbeKind.COLLISION, ProbeKind.UNREADABLE):
                children = self._split(node)
                if children is None:
                    self.unresolved.append(
                        f"secondary {node.mask} medium {node.medium} version {node.version}: "
                        f"{kind.value}"
                    )
                else:
                    self.pending.extend(reversed(children))
                    settled = False
            if settled:
                self.done = min(1.0, self.done + node.weight)
            self.elapsed += trio.current_time() - begun
            if progress is not None:
                progress(
                    ScanProgress(
                        bus.name,
                        baud,
                        "secondary",
                        len(self.found),
                        self.probes,
                        self.done,
                        self.elapsed,
                        _eta(self.elapsed, self.done),
                        node.mask,
                    )
                )
        return self


@dataclass
class ScanReport:
    """The outcome of scanning one or more lines at one or more baud rates."""

    found: list[FoundMeter] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    probes: int = 0
    requests: int = 0

    def add(self, part: ScanState | ScanReport, label: str | None = None) -> None:
        """Take in a finished scan or another report; a meter already known (the same
        identity, found at another rate or on another line) is kept once."""
        known = {m.identity for m in self.found}
        self.found += [m for m in part.found if m.identity not in known]
        self.unresolved += [p if label is None else f"{label}: {p}" for p in part.unresolved]
        self.probes += part.probes
        self.requests += part.requests


async def scan_line(
    bus: BusMaster,
    mode: str,
    *,
    bauds: Sequence[int] | None = None,
    hex_digits: bool = False,
    addresses: Iterable[int] = range(251),
    progress: ProgressCallback | None = None,
    quota: Quota | None = None,
    found: FoundCallback | None = None,
) -> ScanReport:
    """Scan one line at each baud rate in ``bauds`` (default: the line's own); every meter
    found is reported once (at the first rate it answered). ``addresses``: the primary
    addresses to probe. The scan ends early once ``quota`` is met; ``found`` hears of each
    meter as it is found."""
    report = ScanReport()
    for baud in bauds or [bus.transport.baudrate]:
        if _stop(quota):
            break
        if baud != bus.transport.baudrate:
            await bus.set_baudrate(baud)
        scan: PrimaryScan | SecondaryScan
        if mode == "primary":
            scan = PrimaryScan(addresses=list(addresses))
        else:
            scan = SecondaryScan.start(hex_digits=hex_digits)
        await scan.run(bus, progress, quota, found)
        report.add(scan, f"{bus.name} at {baud} baud")
    return report


async def scan_lines(
    buses: Iterable[BusMaster],
    mode: str,
    *,
    bauds: Sequence[int] | None = None,
    hex_digits: bool = False,
    progress: ProgressCallback | None = None,
    quota: Quota | None = None,
    found: FoundCallback | None = None,
) -> ScanReport:
    """Scan several lines at once (each line's own bus task; they do not wait for each other);
    all of them end once ``quota`` is met."""
    buses = list(buses)
    reports = [ScanReport() for _ in buses]

    async def one(index: int) -> None:
        reports[index] = await scan_line(
            buses[index],
            mode,
            bauds=bauds,
            hex_digits=hex_digits,
            progress=progress,
            quota=quota,
            found=found,
        )

    async with trio.open_nursery() as nursery:
        for index in range(len(buses)):
            nursery.start_soon(one, index)
    total = ScanReport()
    for report in reports:
        total.add(report)
    return total
