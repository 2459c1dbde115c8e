"""The LMDB time-series store: readings, values, raw telegrams, logs, settings (docs/store.md)."""

from mbusgw.gateway.store.compaction import compact_now
from mbusgw.gateway.store.ingest import Receipt
from mbusgw.gateway.store.maintenance import CompactionService, RetentionService
from mbusgw.gateway.store.model import (
    MeterInfo,
    MeterLog,
    MeterLogEntry,
    ReadingStatus,
    ReadingValues,
    SeriesInfo,
    SeriesSpec,
    StatusByteMode,
    StoredReading,
    ValueKind,
    ValueTable,
    decode_value,
    encode_value,
)
from mbusgw.gateway.store.queries import RawTelegram
from mbusgw.gateway.store.store import Store, StoreStats, store_path
from mbusgw.gateway.store.syslog import LogEntry, LogLevel, SystemLog
from mbusgw.gateway.store.syslog_table import LogFilter
from mbusgw.gateway.store.telegrams import SeriesNames, reading_from_telegrams, value_flags
from mbusgw.gateway.store.writer import StoreWriter

__all__ = [
    "CompactionService",
    "LogEntry",
    "LogFilter",
    "LogLevel",
    "MeterInfo",
    "MeterLog",
    "MeterLogEntry",
    "RawTelegram",
    "StoredReading",
    "ReadingStatus",
    "ReadingValues",
    "Receipt",
    "RetentionService",
    "SeriesInfo",
    "SeriesNames",
    "SeriesSpec",
    "StatusByteMode",
    "Store",
    "StoreStats",
    "StoreWriter",
    "SystemLog",
    "ValueKind",
    "ValueTable",
    "compact_now",
    "decode_value",
    "encode_value",
    "reading_from_telegrams",
    "value_flags",
    "store_path",
]
