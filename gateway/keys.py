"""The key store: wireless M-Bus keys with match criteria, uploaded as CSV or Excel, or linked to
one meter.

A key file has the columns ``Address, Key, Manufacturer, DeviceType, Version`` (any order, any
case; other columns are ignored). ``-1``, ``*`` or an empty cell means "any". ``Address`` is the
8-digit identification number of the meter, ``Key`` 32 hex digits (16 for the deprecated DES
modes). Files are ``.csv`` (comma, semicolon or tab separated), ``.xlsx`` (openpyxl) or ``.xls``
97-2003 (xlrd). Every row is validated; one bad row rejects the file with a list of
``RowError``s (shared with the meter list: ``line``, ``column``, ``message``, lines counted from
1, the header), and the store is left exactly as it was.

For a meter, ``keys_for`` returns the key linked to it first, then the matching entries from the
most specific to the least (an address beats any combination of the other criteria; then the
more criteria an entry names, the more specific it is). The decoder tries them in that order and
remembers the one that worked.

Keys are secrets: they are never logged, and every listing shows them masked. Entries live in a
``KeyBackend``: ``MemoryKeyBackend`` keeps them in memory (command-line tools), and
``gateway.key_records.StoreKeyBackend`` in the store's ``keys`` table (the running gateway).
Changes are async and all or nothing: saved first, then in force.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from mbusgw.core.crypto import AesKey, DesKey, make_key, mask_key
from mbusgw.core.errors import EncodeError
from mbusgw.core.wmbus import MeterId
from mbusgw.gateway.csvtable import RowError, UnreadableCsv, records

log = logging.getLogger("mbusgw.keys")
T = TypeVar("T")

COLUMNS = ("Address", "Key", "Manufacturer", "DeviceType", "Version")
ANY_MARKS = ("", "*", "-1")
HEX_DIGITS = set("0123456789ABCDEF")

Key = AesKey | DesKey


class KeyFileError(ValueError):
    """A key file was rejected; ``errors`` lists every problem found. Nothing was changed."""

    def __init__(self, message: str, errors: list[RowError] | None = None) -> None:
        self.errors = errors or []
        details = "; ".join(str(e) for e in self.errors[:10])
        more = f" (and {len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"{message}: {details}{more}" if details else message)


@dataclass(frozen=True)
class KeyEntry:
    """A key with its match criteria (None = any)."""

    key: Key = field(repr=False)
    address: str | None = None
    manufacturer: str | None = None
    device_type: int | None = None
    version: int | None = None
    source: str = ""
    id: int = 0

    def matches(self, meter: MeterId) -> bool:
        return (
            (self.address is None or self.address == meter.id)
            and (self.manufacturer is None or self.manufacturer == meter.manufacturer)
            and (self.device_type is None or self.device_type == meter.device_type)
            and (self.version is None or self.version == meter.version)
        )

    @property
    def specificity(self) -> tuple[int, int]:
        named = (self.manufacturer, self.device_type, self.version)
        return (self.address is not None, sum(value is not None for value in named))

    @property
    def criteria(self) -> tuple:
        return (self.address, self.manufacturer, self.device_type, self.version)

    def to_dict(self) -> dict[str, Any]:
        """For listings and APIs: the key masked."""
        return {
            "id": self.id,
            "address": self.address,
            "manufacturer": self.manufacturer,
            "device_type": self.device_type,
            "version": self.version,
            "key": mask_key(self.key),
            "source": self.source,
        }

    def __repr__(self) -> str:
        return (
            f"KeyEntry(id={self.id}, address={self.address!r}, manufacturer="
            f"{self.manufacturer!r}, device_type={self.device_type!r}, version={self.version!r}, "
            f"key={mask_key(self.key)})"
        )


@dataclass(frozen=True)
class KeySnapshot:
    """Everything the store holds; replaced as a whole, so a change is all or nothing."""

    entries: tuple[KeyEntry, ...] = ()
    links: tuple[tuple[MeterId, Key], ...] = ()
    next_id: int = 1


class KeyBackend(Protocol):
    """Where the key store keeps its snapshot: ``load`` once at start, ``save`` every change
    (durably, before the change takes effect; a failing ``save`` changes nothing)."""

    def load(self) -> KeySnapshot: ...

    async def save(self, snapshot: KeySnapshot) -> None: ...


class MemoryKeyBackend:
    """Keys for one run only (command-line tools, tests)."""

    def __init__(self, snapshot: KeySnapshot | None = None) -> None:
        self._snapshot = snapshot or KeySnapshot()

    def load(self) -> KeySnapshot:
        return self._snapshot

    async def save(self, snapshot: KeySnapshot) -> None:
        self._snapshot = snapshot


# ---------------------------------------------------------------- parsing key files


def _text(value: Any) -> str:
    """A cell as text; spreadsheet numbers (12345678.0) lose their fraction."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _is_any(text: str) -> bool:
    return text in ANY_MARKS


def _parse_address(text: str) -> str | None:
    if _is_any(text):
        return None
    digits = text.upper().removeprefix("0X")
    if not digits or len(digits) > 8 or not set(digits) <= HEX_DIGITS:
        raise ValueError(f"{text!r} is not an 8-digit meter address (or -1/* for any)")
    return digits.zfill(8)


def _parse_manufacturer(text: str) -> str | None:
    if _is_any(text):
        return None
    letters = text.upper()
    if len(letters) != 3 or not letters.isalpha() or not letters.isascii():
        raise ValueError(f"{text!r} is not a 3-letter manufacturer code (or * for any)")
    return letters


def _parse_byte(text: str, what: str) -> int | None:
    if _is_any(text):
        return None
    try:
        number = int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number 0-255 (or -1 for any)") from None
    if not 0 <= number <= 255:
        raise ValueError(f"{what} {number} is outside 0-255 (or -1 for any)")
    return number


def _parse_key_text(text: str) -> Key:
    compact = "".join(text.split())
    if len(compact) not in (16, 32) or not set(compact.upper()) <= HEX_DIGITS:
        raise ValueError(
            f"key {mask_key(compact)} must be 32 hex digits (16 for a DES key), "
            f"it has {len(compact)} characters"
        )
    return make_key(compact)


def _header_map(header: list[Any]) -> dict[str, int]:
    names = {"".join(_text(name).split()).lower(): index for index, name in enumerate(header)}
    wanted = {column: column.lower() for column in COLUMNS}
    missing = [column for column, key in wanted.items() if key not in names]
    if missing:
        raise KeyFileError(
            "the key file misses columns",
            [RowError(1, column, "column is missing") for column in missing],
        )
    return {column: names[key] for column, key in wanted.items()}


def parse_rows(rows: Iterable[list[Any]], source: str) -> list[KeyEntry]:
    """Validate the rows of a key file (the first is the header) into entries."""
    iterator = iter(rows)
    try:
        header = next(iterator)
    except StopIteration:
        raise KeyFileError("the key file is empty") from None
    columns = _header_map(list(header))
    entries: list[KeyEntry] = []
    errors: list[RowError] = []
    for number, row in enumerate(iterator, start=2):
        cells = {c: _text(row[i]) if i < len(row) else "" for c, i in columns.items()}
        if not any(cells.values()):
            continue
        entry = _parse_row(cells, number, source, errors)
        if entry is not None:
            entries.append(entry)
    if errors:
        raise KeyFileError(f"{source}: {len(errors)} invalid row(s), nothing was imported", errors)
    if not entries:
        raise KeyFileError(f"{source}: the file holds no keys")
    return entries


CRITERIA_PARSERS: dict[str, Callable[[str], Any]] = {
    "Address": _parse_address,
    "Manufacturer": _parse_manufacturer,
    "DeviceType": lambda text: _parse_byte(text, "device type"),
    "Version": lambda text: _parse_byte(text, "version"),
}
FIELDS = {
    "Address": "address",
    "Manufacturer": "manufacturer",
    "DeviceType": "device_type",
    "Version": "version",
}


def _parse_criteria(cells: dict[str, str], number: int, errors: list[RowError]) -> dict:
    parsed: dict[str, Any] = {}
    for column, parse in CRITERIA_PARSERS.items():
        try:
            parsed[FIELDS[column]] = parse(cells.get(column, ""))
        except ValueError as error:
            errors.append(RowError(number, column, str(error)))
    return parsed


def _parse_key_cell(text: str, number: int, errors: list[RowError]) -> Key | None:
    if not text:
        errors.append(RowError(number, "Key", "the key is missing"))
        return None
    try:
        return _parse_key_text(text)
    except (ValueError, EncodeError) as error:
        errors.append(RowError(number, "Key", str(error)))
        return None


def _parse_row(
    cells: dict[str, str], number: int, source: str, errors: list[RowError]
) -> KeyEntry | None:
    before = len(errors)
    criteria = _parse_criteria(cells, number, errors)
    key = _parse_key_cell(cells["Key"], number, errors)
    if len(errors) > before or key is None:
        return None
    return KeyEntry(key=key, source=f"{source} row {number}", **criteria)


def read_csv(data: bytes) -> list[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    first_line = text.splitlines()[0] if text else ""
    try:
        dialect = csv.Sniffer().sniff(first_line, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        return [row for _, row in records(text, dialect)]
    except UnreadableCsv as unreadable:
        raise KeyFileError("not a readable CSV file", [unreadable.error]) from None


# The spreadsheet libraries raise many different exceptions on a damaged or hostile file (zip,
# XML, OLE and struct errors among them); any failure while reading is the file's fault.


def read_xlsx(data: bytes) -> list[list[Any]]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            return [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]
        finally:
            book.close()
    except Exception as error:
        raise KeyFileError(f"not a readable .xlsx workbook ({type(error).__name__})") from None


def read_xls(data: bytes) -> list[list[Any]]:
    import xlrd

    try:
        sheet = xlrd.open_workbook(file_contents=data).sheet_by_index(0)
        return [sheet.row_values(r) for r in range(sheet.nrows)]
    except Exception as error:
        raise KeyFileError(f"not a readable .xls workbook ({type(error).__name__})") from None


def parse_key_file(data: bytes, filename: str) -> list[KeyEntry]:
    """Read and validate a key file; the format comes from the name, or from the content."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".xlsx" or (suffix not in (".csv", ".xls") and data[:2] == b"PK"):
        rows = read_xlsx(data)
    elif suffix == ".xls" or data[:4] == b"\xd0\xcf\x11\xe0":
        rows = read_xls(data)
    else:
        rows = read_csv(data)
    return parse_rows(rows, Path(filename).name)


def _key_object(key: str | bytes | Key, errors: list[RowError]) -> Key | None:
    if isinstance(key, (AesKey, DesKey)):
        return key
    text = key if isinstance(key, str) else bytes(key).hex()
    return _parse_key_cell(text, 1, errors)


# ---------------------------------------------------------------- the store


def with_entries(
    snapshot: KeySnapshot, new: Iterable[KeyEntry], *, replace_all: bool = False
) -> tuple[KeySnapshot, list[KeyEntry]]:
    """``snapshot`` with ``new`` entries numbered and added (an entry with the same criteria
    and key as one kept is not added twice); returns it and the entries added."""
    kept = () if replace_all else snapshot.entries
    existing = {(entry.criteria, entry.key) for entry in kept}
    next_id = snapshot.next_id
    added: list[KeyEntry] = []
    for entry in new:
        if (entry.criteria, entry.key) in existing:
            continue
        existing.add((entry.criteria, entry.key))
        added.append(replace(entry, id=next_id))
        next_id += 1
    return replace(snapshot, entries=kept + tuple(added), next_id=next_id), added


Change = Callable[[KeySnapshot], tuple[KeySnapshot, T, str]]


class KeyStore:
    """Keys with match criteria and per-meter links; ``keys_for`` is the decoder's key source.

    Every change is async: the new snapshot is saved through the backend first and takes
    effect only once saved, so a rejected file or a failed save changes nothing. Changes are
    serialised, so two at once cannot lose one another."""

    def __init__(self, backend: KeyBackend | None = None) -> None:
        self._backend = backend or MemoryKeyBackend()
        self._snapshot = self._backend.load()
        self._cache: dict[MeterId, list[Key]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._lock = trio.Lock()

    # -- reading

    @property
    def pristine(self) -> bool:
        """Nothing was ever added (ids are never reused, so removing keys does not count)."""
        return self._snapshot.next_id == 1 and not self._snapshot.links

    def entries(self) -> tuple[KeyEntry, ...]:
        return self._snapshot.entries

    def links(self) -> dict[MeterId, Key]:
        return dict(self._snapshot.links)

    def listing(self) -> dict[str, Any]:
        """Everything the store holds, keys masked (for the UI and the APIs)."""
        return {
            "entries": [entry.to_dict() for entry in self._snapshot.entries],
            "links": [
                {"meter": meter.to_dict(), "key": mask_key(key)}
                for meter, key in self._snapshot.links
            ],
        }

    def keys_for(self, meter: MeterId) -> list[Key]:
        """The keys to try for ``meter``: its linked key, then matches, most specific first."""
        found = self._cache.get(meter)
        if found is None:
            found = self._lookup(meter)
            self._cache[meter] = found
        return found

    __call__ = keys_for

    def best_key(self, meter: MeterId) -> Key | None:
        found = self.keys_for(meter)
        return found[0] if found else None

    def _lookup(self, meter: MeterId) -> list[Key]:
        linked = [key for linked_meter, key in self._snapshot.links if linked_meter == meter]
        matching = [entry for entry in self._snapshot.entries if entry.matches(meter)]
        matching.sort(key=lambda entry: entry.specificity, reverse=True)
        out: list[Key] = []
        for key in linked + [entry.key for entry in matching]:
            if key not in out:
                out.append(key)
        return out

    # -- changing (each change builds a new snapshot, saves it, then swaps it in)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change (decoders drop their cached key matches)."""
        self._listeners.append(listener)

    async def _change(self, change: Change[T]) -> T:
        async with self._lock:
            snapshot, result, what = change(self._snapshot)
            await self._backend.save(snapshot)
            self._snapshot = snapshot
            self._cache.clear()
        log.info(
            "key store: %s (%d entries, %d links)", what, len(snapshot.entries), len(snapshot.links)
        )
        for listener in self._listeners:
            listener()
        return result

    async def import_file(self, data: bytes, filename: str, *, replace_all: bool = False) -> int:
        """Validate a key file and add its entries (an entry with the same criteria and key is
        not added twice); ``replace_all`` drops the previous entries. Returns the number of new
        entries. A bad file raises ``KeyFileError`` and changes nothing."""
        parsed = parse_key_file(data, filename)
        added = await self.add_entries(parsed, replace_all=replace_all, what=f"imported {filename}")
        return len(added)

    async def add_entries(
        self, new: Iterable[KeyEntry], *, replace_all: bool = False, what: str = "added keys"
    ) -> list[KeyEntry]:
        new = list(new)

        def change(snapshot: KeySnapshot) -> tuple[KeySnapshot, list[KeyEntry], str]:
            changed, added = with_entries(snapshot, new, replace_all=replace_all)
            return changed, added, f"{what}: {len(added)} new"

        return await self._change(change)

    async def add(
        self,
        key: str | bytes | Key,
        *,
        address: str | int | None = None,
        manufacturer: str | None = None,
        device_type: int | None = None,
        version: int | None = None,
        source: str = "entered",
    ) -> list[KeyEntry]:
        """Add one key entered by hand, validated like a file row; returns the new entry (an
        empty list when the same key with the same criteria is already there)."""
        errors: list[RowError] = []
        cells = {
            "Address": _text(address),
            "Manufacturer": _text(manufacturer),
            "DeviceType": _text(device_type),
            "Version": _text(version),
        }
        criteria = _parse_criteria(cells, 1, errors)
        key_object = _key_object(key, errors)
        if errors or key_object is None:
            raise KeyFileError("invalid key entry", errors)
        entry = KeyEntry(key=key_object, source=source, **criteria)
        return await self.add_entries([entry], what="entered a key")

    async def remove(self, entry_id: int) -> None:
        def change(snapshot: KeySnapshot) -> tuple[KeySnapshot, None, str]:
            kept = tuple(entry for entry in snapshot.entries if entry.id != entry_id)
            if len(kept) == len(snapshot.entries):
                raise KeyError(f"no key entry {entry_id}")
            return replace(snapshot, entries=kept), None, f"removed entry {entry_id}"

        await self._change(change)

    async def link(self, meter: MeterId, key: str | bytes | Key) -> None:
        """Link a key to one meter: it is tried first for that meter, whatever the criteria."""
        errors: list[RowError] = []
        key_object = _key_object(key, errors)
        if errors or key_object is None:
            raise KeyFileError("invalid key", errors)

        def change(snapshot: KeySnapshot) -> tuple[KeySnapshot, None, str]:
            links = tuple((m, k) for m, k in snapshot.links if m != meter)
            linked = replace(snapshot, links=links + ((meter, key_object),))
            return linked, None, f"linked a key to {meter}"

        await self._change(change)

    async def unlink(self, meter: MeterId) -> None:
        def change(snapshot: KeySnapshot) -> tuple[KeySnapshot, None, str]:
            links = tuple((m, k) for m, k in snapshot.links if m != meter)
            return replace(snapshot, links=links), None, f"unlinked {meter}"

        await self._change(change)
