"""What happens between two runs of the gateway: a restart, a factory reset, a restore.

The web interface (or any operator tool) sets ``gateway.after_stop`` and stops the gateway; once
its store is closed, ``mbusgw run`` applies the request here and starts the gateway again. Doing
it between runs means no part of the program holds the store while it is replaced or removed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mbusgw.gateway.store import store_path
from mbusgw.gateway.store.backup import restore_backup
from mbusgw.gateway.store.sealing import KEY_FILE

ACTIONS = ("restart", "factory_reset", "restore")
# Everything a factory reset removes from the data directory besides the store itself.
RESET_FOLDERS = ("tls", "transfer")


@dataclass(frozen=True)
class AfterStop:
    action: str  # restart | factory_reset | restore
    backup: Path | None = None  # restore: a backup file already checked by its uploader
    passphrase: str | None = field(default=None, repr=False)  # restore: of the backup's secrets

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")
        if (self.action == "restore") != (self.backup is not None):
            raise ValueError("a restore, and only a restore, names a backup file")


def apply_after_stop(request: AfterStop, data_dir: Path) -> str:
    """Carry out ``request`` on the stopped gateway's data directory; returns a log line."""
    store_file = store_path(data_dir)
    if request.action == "factory_reset":
        for path in (store_file, Path(f"{store_file}-lock"), data_dir / KEY_FILE):
            path.unlink(missing_ok=True)
        for folder in RESET_FOLDERS:
            shutil.rmtree(data_dir / folder, ignore_errors=True)
        return "factory reset: values, logs, settings, accounts, keys and certificates removed"
    if request.action == "restore":
        assert request.backup is not None
        try:
            info = restore_backup(request.backup, store_file, passphrase=request.passphrase)
        finally:
            request.backup.unlink(missing_ok=True)
        return f"backup of {info.created} restored"
    return "restart"
