"""Licence files (manual 4.5.1, 6.20; docs/licence.md): optional, signed, for one device.

Without a licence the gateway runs every feature with the capacity its settings allow. A
licence file is JSON: ``{"licence": {...}, "signature": "<base64>"}``, the signature an Ed25519
signature over the ``licence`` object as canonical JSON (sorted keys, no spaces, UTF-8). The
distributor's public key (PEM) is ``licence-key.pem`` in the data directory; the device's id
is ``device-id`` there, made once at first start. A file that is not signed by that key or
that names another device is refused with a message that says which, and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from mbusgw.gateway.meters import CAPACITIES

KEY_FILE = "licence-key.pem"
LICENCE_FILE = "licence.json"
DEVICE_ID_FILE = "device-id"
MAX_LICENCE_BYTES = 64 * 1024


class LicenceError(ValueError):
    """A licence file was refused; the message says why."""


@dataclass(frozen=True)
class Licence:
    device: str
    licensee: str
    capacity: int
    features: tuple[str, ...]
    issued: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "licensee": self.licensee,
            "capacity": self.capacity,
            "features": list(self.features),
            "issued": self.issued,
        }


def canonical(payload: dict[str, Any]) -> bytes:
    """The bytes a signature covers."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def device_id(data_dir: Path) -> str:
    """This installation's id: made once (random), kept in the data directory."""
    path = data_dir / DEVICE_ID_FILE
    if not path.exists():
        path.write_text(secrets.token_hex(8) + "\n", encoding="ascii")
    return path.read_text(encoding="ascii").strip()


def verify(data: bytes, public_key_pem: bytes | None, device: str) -> Licence:
    """The licence in ``data`` if its signature and device are right; ``LicenceError`` says
    what is wrong otherwise."""
    if public_key_pem is None:
        raise LicenceError(f"no licence key is installed ({KEY_FILE} in the data directory)")
    if len(data) > MAX_LICENCE_BYTES:
        raise LicenceError(f"a licence file has at most {MAX_LICENCE_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"))
        payload, signature = (
            document["licence"],
            base64.b64decode(document["signature"], validate=True),
        )
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error):
        raise LicenceError("not a licence file (JSON with 'licence' and 'signature')") from None
    if not isinstance(payload, dict):
        raise LicenceError("not a licence file ('licence' must be an object)")
    try:
        key = load_pem_public_key(public_key_pem)
    except ValueError:
        raise LicenceError(f"the installed licence key ({KEY_FILE}) is not a PEM key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise LicenceError(f"the installed licence key ({KEY_FILE}) is not an Ed25519 key")
    try:
        key.verify(signature, canonical(payload))
    except InvalidSignature:
        raise LicenceError(
            "the signature is not valid: the file was changed or not issued by the distributor"
        ) from None
    licence = _licence(payload)
    if licence.device != device:
        raise LicenceError(f"the licence is for device {licence.device}, this is device {device}")
    return licence


def _licence(payload: dict[str, Any]) -> Licence:
    capacity = payload.get("capacity")
    features = payload.get("features", [])
    if capacity not in CAPACITIES:
        raise LicenceError(
            f"the licence's capacity must be one of {', '.join(map(str, CAPACITIES))}"
        )
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise LicenceError("the licence's features must be a list of names")
    fields = {name: payload.get(name) for name in ("device", "licensee", "issued")}
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise LicenceError(f"the licence names no {name}")
    return Licence(
        fields["device"], fields["licensee"], capacity, tuple(features), fields["issued"]
    )


class LicenceFiles:
    """The licence of one data directory: the key, the accepted file, the device id."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.device = device_id(data_dir)
        self.licence: Licence | None = None
        self.problem: str | None = None  # why a stored licence no longer holds

    def _key(self) -> bytes | None:
        path = self.data_dir / KEY_FILE
        return path.read_bytes() if path.exists() else None

    def load(self) -> Licence | None:
        """The stored licence, checked again (a key or device change voids it, said why)."""
        path = self.data_dir / LICENCE_FILE
        self.licence, self.problem = None, None
        if path.exists():
            try:
                self.licence = verify(path.read_bytes(), self._key(), self.device)
            except LicenceError as exc:
                self.problem = str(exc)
        return self.licence

    def check(self, data: bytes) -> Licence:
        return verify(data, self._key(), self.device)

    def install(self, data: bytes) -> Licence:
        """Verify, then keep the file (written whole: a crash leaves the old one)."""
        licence = self.check(data)
        target = self.data_dir / LICENCE_FILE
        temporary = target.with_suffix(".tmp")
        temporary.write_bytes(data)
        temporary.replace(target)
        self.licence, self.problem = licence, None
        return licence

    def status(self, capacity_setting: int) -> dict[str, Any]:
        limit = self.licence.capacity if self.licence else None
        return {
            "device": self.device,
            "licence": self.licence.as_dict() if self.licence else None,
            "problem": self.problem,
            "capacity": min(capacity_setting, limit) if limit else capacity_setting,
        }
