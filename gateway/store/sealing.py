"""Secrets at rest: sealed in the store under a key file of their own, private file modes.

The store holds secrets (AES keys of meters, passwords of report receivers, brokers and
servers, the web session secret). Each is kept sealed, AES-256-GCM under the key in
``store.key`` beside the store file (0600, in a 0700 data directory), so a copy of the store
file alone reveals none of them. A sealed value is a JSON string ``sealed:v1:<base64>`` (nonce,
ciphertext, tag); the associated data names the table, so a value cannot be moved to another
table and still open. A sealed value that does not open (the store copied without its key
file) reads as null: a setting as unset, a key record as damaged (reported and left out), and
the store's other contents read as before.

Which values are secret: settings fields whose model marks them ``secret``
(``gateway/settings.py``), the ``key`` of every record in the ``keys`` table, and the ``hex``
of the web session secret in the ``users`` table (``RECORD_SECRETS``). Reading opens any sealed
string wherever it is, so the reader needs no list.

A backup may carry the secrets, then sealed under a key derived from a passphrase (scrypt);
``PassphraseSealer`` makes that key and checks a passphrase before anything is changed.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from mbusgw.gateway.errors import StoreError

KEY_FILE = "store.key"
PREFIX = "sealed:v1:"
NONCE_BYTES = 12
# the secret field of a record, per record table
RECORD_SECRETS = {"keys": "key", "users": "hex"}
DIR_MODE = 0o700
FILE_MODE = 0o600
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
PASSPHRASE_CHECK = "mbusgw backup passphrase check"


class SealError(StoreError):
    """A sealed value that cannot be opened (missing or wrong key, damaged data)."""


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) for the gateway alone: 0700, tightened if it exists."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(DIR_MODE)


def private_file(path: Path) -> None:
    """Tighten an existing file to 0600 (files created earlier with a looser mode)."""
    if path.exists() and path.stat().st_mode & 0o077:
        path.chmod(FILE_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically, readable by the gateway alone (0600 from the first byte)."""
    partial = path.with_name(path.name + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an older .part of a looser mode keeps its mode otherwise
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


class Sealer:
    """Seals and opens secret strings under one AES-256 key."""

    def __init__(self, key: bytes | None, source: str) -> None:
        self._aead = AESGCM(key) if key is not None else None
        self.source = source  # names the key in errors (a file, a backup's passphrase)

    @classmethod
    def scratch(cls) -> Sealer:
        """A sealer under a random key of its own, for a copy that keeps no secret sealed."""
        return cls(AESGCM.generate_key(bit_length=256), "a scratch key")

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    @classmethod
    def beside(cls, store_file: Path, *, create: bool) -> Sealer:
        """The sealer of the store at ``store_file``: its key file, created when ``create``
        and missing; without one (a read-only open of a store never written here), sealing
        fails and opening a sealed value says which file is missing."""
        path = store_file.with_name(KEY_FILE)
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            if not create:
                return cls(None, str(path))
            key = _create_key_file(path)
        except OSError as error:
            raise StoreError(f"cannot read the store's key file {path}: {error.strerror}") from None
        if len(key) != 32:
            raise StoreError(f"{path} is not a store key file (32 bytes)")
        private_file(path)
        return cls(key, str(path))

    def seal(self, text: str, table: str) -> str:
        if self._aead is None:
            raise SealError(f"the store's key file {self.source} is missing: cannot seal")
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode(), _context(table))
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, value: str, table: str) -> str:
        if self._aead is None:
            raise SealError(
                f"the store's key file {self.source} is missing: its secrets cannot be read"
            )
        try:
            raw = base64.b64decode(value[len(PREFIX) :], validate=True)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _context(table))
        except (InvalidTag, ValueError):
            raise SealError(f"a sealed secret does not open with {self.source}") from None
        return plain.decode()

    def readable(self, value: str, table: str) -> str | None:
        """The opened secret, or None when it does not open with this key."""
        try:
            return self.open(value, table)
        except SealError:
            return None

    def open_tree(self, value: Any, table: str) -> Any:
        """``value`` (decoded JSON) with every sealed string in it opened (None if it does not
        open with this key)."""
        return map_sealed(value, lambda text: self.readable(text, table))

    def unreadable(self, value: Any, table: str) -> int:
        """How many sealed strings in ``value`` do not open with this key."""
        found = []
        map_sealed(value, lambda text: found.append(self.readable(text, table)))
        return found.count(None)

    def seal_record(self, table: str, record: object) -> object:
        """A record of a record table with its secret field sealed (see ``RECORD_SECRETS``)."""
        name = RECORD_SECRETS.get(table)
        if name is None or not isinstance(record, dict):
            return record
        value = record.get(name)
        if not isinstance(value, str) or not value or is_sealed(value):
            return record
        return {**record, name: self.seal(value, table)}


class PassphraseSealer(Sealer):
    """A sealer whose key is derived from a passphrase (a backup carrying secrets)."""

    def __init__(self, passphrase: str, params: dict[str, Any] | None = None) -> None:
        if not passphrase:
            raise SealError("a passphrase is needed to seal or open a backup's secrets")
        self.params = params or {
            "kdf": "scrypt",
            "salt": secrets.token_hex(16),
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
        }
        try:
            kdf = Scrypt(
                salt=bytes.fromhex(self.params["salt"]),
                length=32,
                n=int(self.params["n"]),
                r=int(self.params["r"]),
                p=int(self.params["p"]),
            )
            key = kdf.derive(passphrase.encode())
        except (KeyError, TypeError, ValueError) as error:
            raise SealError(f"the backup's key parameters are damaged: {error}") from None
        super().__init__(key, "the passphrase")
        if "check" not in self.params:
            self.params["check"] = self.seal(PASSPHRASE_CHECK, "backup")

    @classmethod
    def checked(cls, passphrase: str, params: dict[str, Any]) -> PassphraseSealer:
        """The sealer for a backup's ``params``; ``SealError`` when the passphrase is wrong."""
        if not isinstance(params, dict) or params.get("kdf") != "scrypt":
            raise SealError("the backup's secrets use an unknown key derivation")
        sealer = cls(passphrase, dict(params))
        try:
            ok = sealer.open(str(params.get("check", "")), "backup") == PASSPHRASE_CHECK
        except SealError:
            ok = False
        if not ok:
            raise SealError("wrong passphrase for this backup's secrets")
        return sealer


def _context(table: str) -> bytes:
    return b"mbusgw-store/" + table.encode()


def _create_key_file(path: Path) -> bytes:
    private_dir(path.parent)
    key = AESGCM.generate_key(bit_length=256)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path.read_bytes()  # another process made it first
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return key


def map_sealed(value: Any, change: Callable[[str], Any]) -> Any:
    """``value`` (decoded JSON) with every sealed string replaced by ``change(string)``."""
    if is_sealed(value):
        return change(value)
    if isinstance(value, dict):
        return {key: map_sealed(entry, change) for key, entry in value.items()}
    if isinstance(value, list):
        return [map_sealed(entry, change) for entry in value]
    return value
