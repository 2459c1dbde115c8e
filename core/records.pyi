"""Type stub of the compiled record decoder (core/records.pyx)."""

import datetime
from decimal import Decimal
from typing import NamedTuple

import numpy as np

RECORD_DTYPE: np.dtype
IGNORABLE_SECURITY_MODES: frozenset[int]

# datetime.datetime is a datetime.date
Value = int | Decimal | float | datetime.date | datetime.time | str | bytes | None

class ApplicationError(NamedTuple):
    code: int
    text: str

class Header:
    id: str | None
    manufacturer: str | None
    version: int | None
    medium: int | None
    access_number: int | None
    status: int | None
    signature: int | None
    ci: int | None
    def __init__(
        self,
        id: str | None = ...,
        manufacturer: str | None = ...,
        version: int | None = ...,
        medium: int | None = ...,
        access_number: int | None = ...,
        status: int | None = ...,
        signature: int | None = ...,
        ci: int | None = ...,
    ) -> None: ...
    @property
    def medium_name(self) -> str: ...
    def to_dict(self) -> dict[str, object]: ...

class Record:
    @property
    def function(self) -> str: ...
    @property
    def storage(self) -> int: ...
    @property
    def tariff(self) -> int: ...
    @property
    def subunit(self) -> int: ...
    @property
    def quantity(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def value(self) -> Value: ...
    @property
    def kind(self) -> str: ...
    @property
    def exponent(self) -> int: ...
    @property
    def dif_vif(self) -> str: ...
    @property
    def invalid(self) -> bool: ...
    @property
    def summer_time(self) -> bool: ...
    @property
    def flags(self) -> int: ...
    @property
    def modifiers(self) -> tuple[str, ...]: ...
    @property
    def record_error(self) -> str | None: ...
    def to_dict(self) -> dict[str, object]: ...

class Telegram:
    payload: bytes
    ci: int
    more_records_follow: bool
    configuration_ignored: bool
    @property
    def header(self) -> Header: ...
    @property
    def array(self) -> np.ndarray: ...
    @property
    def records(self) -> list[Record]: ...
    @property
    def manufacturer_data(self) -> bytes | None: ...
    @property
    def error(self) -> ApplicationError | None: ...
    @property
    def alarm(self) -> int | None: ...
    def __len__(self) -> int: ...
    def to_dict(self) -> dict[str, object]: ...
    def to_json(self) -> str: ...

def decode(frame: bytes | bytearray | memoryview) -> Telegram: ...
def decode_application(
    ci: int, data: bytes | bytearray | memoryview, header: Header | None = None
) -> Telegram: ...
