"""Configuration files and backups through the web: download, upload, checked before use.

A configuration file (TOML, ``gateway/store/configfile.py``) holds every setting that is not
specific to one device; an upload is checked completely and then applied in one change. A
backup (``gateway/store/backup.py``) holds all values and settings; it is written to a file in
the data directory while the gateway runs and streamed from there. An uploaded backup is checked
(header, size, checksum, and the passphrase of the secrets it carries) before the gateway is
asked to restore it, which needs the store closed. A backup carries secrets only when a
passphrase is given to seal them with.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
from quart import Response, g

from mbusgw.gateway.errors import BackupError
from mbusgw.gateway.facade import (
    BACKUP_HEADER_SIZE as HEADER_SIZE,
)
from mbusgw.gateway.facade import (
    MAX_CONFIG_BYTES as MAX_FILE_BYTES,
)
from mbusgw.gateway.facade import (
    GatewayHandle,
    backup_sealer,
    create_backup,
    parse_config,
    private_dir,
    read_backup_info,
    render_config,
)
from mbusgw.gateway.settings import masked
from mbusgw.web.errors import BadRequest, Forbidden

CHUNK = 256 * 1024


class InvalidBackup(BadRequest):
    code = "invalid_backup"


def export_config(gw: GatewayHandle, passwords: bool = False) -> str:
    """The configuration file; passwords only when asked for (and only an administrator may
    ask): without them, importing the file keeps the passwords the gateway has."""
    if passwords and not g.user.is_admin:
        raise Forbidden("only an administrator can export passwords")
    return render_config(gw.settings, gw.clock.now().timestamp(), secrets=passwords)


async def import_config(gw: GatewayHandle, text: str) -> dict[str, Any]:
    if len(text.encode()) > MAX_FILE_BYTES:
        raise BadRequest(f"a configuration file has at most {MAX_FILE_BYTES} bytes")
    changes = parse_config(text, "file")
    await gw.update_settings(changes)
    return masked(gw.settings)


def _work_dir(gw: GatewayHandle) -> Path:
    path = gw.startup.data_dir / "transfer"
    private_dir(path)
    return path


async def backup_file(gw: GatewayHandle, passphrase: str | None = None) -> Path:
    """A fresh backup in the data directory (the caller streams it, then removes it); with
    ``passphrase`` it carries the secrets, sealed with it."""
    if passphrase is not None and len(passphrase) < 8:
        raise BadRequest(
            "the passphrase is too short", {"X-Backup-Passphrase": "at least 8 characters"}
        )
    path = _work_dir(gw) / f"backup-{secrets.token_hex(4)}.mbgw"
    env = gw.store.env
    created = gw.clock.now().timestamp()
    await trio.to_thread.run_sync(lambda: create_backup(env, path, created, passphrase=passphrase))
    return path


def backup_response(gw: GatewayHandle, path: Path) -> Response:
    """A backup file as a download; the file is removed once it is sent."""
    stamp = gw.clock.now().strftime("%Y%m%d-%H%M")
    response = Response(stream_and_remove(path), mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f'attachment; filename="mbusgw-{stamp}.backup"'
    return response


async def stream_and_remove(path: Path) -> AsyncIterator[bytes]:
    try:
        async with await trio.open_file(path, "rb") as file:
            while chunk := await file.read(CHUNK):
                yield chunk
    finally:
        path.unlink(missing_ok=True)


async def stage_restore(
    gw: GatewayHandle, chunks: AsyncIterator[bytes], passphrase: str | None = None
) -> Path:
    """Write an uploaded backup to the data directory and check its header and the passphrase
    of its secrets; ``BadRequest`` and no file left behind when it is not a good backup."""
    path = _work_dir(gw) / f"restore-{secrets.token_hex(4)}.mbgw"
    try:
        async with await trio.open_file(path, "wb", opener=_private) as out:
            async for chunk in chunks:
                await out.write(chunk)
        info = await trio.to_thread.run_sync(read_backup_info, path)
        await trio.to_thread.run_sync(backup_sealer, info, passphrase)
    except BackupError as exc:
        path.unlink(missing_ok=True)
        raise InvalidBackup(f"not a usable backup: {exc}") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if not await trio.to_thread.run_sync(_intact, path, info):
        path.unlink(missing_ok=True)
        raise InvalidBackup("the backup is truncated or damaged (its checksum does not match)")
    return path


def _private(path: str, flags: int) -> int:
    """Open a new file readable by the gateway alone (an uploaded backup holds its data)."""
    return os.open(path, flags, 0o600)


def _intact(path: Path, info: Any) -> bool:
    """Size and SHA-256 as the backup's manifest states them."""
    if os.path.getsize(path) != HEADER_SIZE + info.data_bytes:
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        file.seek(HEADER_SIZE)
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == info.sha256
