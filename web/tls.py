"""HTTPS for the web interface: the server certificate, the client trust store, the settings.

Everything lives in ``<data dir>/tls/``: ``server.crt`` and ``server.key`` (PEM), ``trust.pem``
(the certificates of the authorities whose client certificates are accepted) and
``tls.json`` (HTTPS on/off, its port, whether client certificates are required), all 0600 in a
0700 directory. A certificate arrives as PEM (certificate chain + key) or PKCS#12, or is
generated self-signed; every upload is checked completely (the key must belong to the
certificate) before a file is replaced, and files are replaced atomically. The private key is
never returned by any API.

Client-certificate authentication happens in the TLS handshake: with ``client_certificates =
"required"`` a client without a certificate issued by the trust store is refused before any
HTTP is spoken.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from mbusgw.gateway.facade import private_dir, write_private
from mbusgw.web.errors import BadRequest

CLIENT_MODES = ("off", "required")
HOSTNAME = re.compile(r"^(?=.{1,64}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*$")


class CertificateError(BadRequest):
    code = "invalid_certificate"


@dataclass(frozen=True)
class TlsSettings:
    https: bool = False
    https_port: int = 8443
    client_certificates: str = "off"  # off | required
    redirect_http: bool = True  # plain HTTP answers with a redirect to HTTPS

    def checked(self) -> TlsSettings:
        errors = {}
        if not isinstance(self.https, bool):
            errors["https"] = "must be true or false"
        if not isinstance(self.redirect_http, bool):
            errors["redirect_http"] = "must be true or false"
        port = self.https_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            errors["https_port"] = "must be a port number 0-65535"
        if self.client_certificates not in CLIENT_MODES:
            errors["client_certificates"] = f"must be one of {', '.join(CLIENT_MODES)}"
        if errors:
            raise BadRequest("the HTTPS settings were refused; nothing was changed", errors)
        return self


def describe_certificate(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "serial": format(cert.serial_number, "x"),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(":"),
        "self_signed": cert.issuer == cert.subject,
    }


def _same_key(cert: x509.Certificate, key: Any) -> bool:
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    return cert.public_key().public_bytes(encoding, public) == key.public_key().public_bytes(
        encoding, public
    )


def _load_pem_chain(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def _private_key_block(pem: bytes) -> bytes:
    """The private key's PEM block (a combined file holds the certificates too)."""
    start = pem.find(b"-----BEGIN ")
    while start != -1:
        line_end = pem.find(b"\n", start)
        if b"PRIVATE KEY-----" in pem[start : line_end if line_end != -1 else None]:
            end = pem.find(b"-----END ", start)
            end = pem.find(b"-----", end + 9) if end != -1 else -1
            return pem[start : end + 5] if end != -1 else pem[start:]
        start = pem.find(b"-----BEGIN ", start + 1)
    return pem


class TlsFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_path = directory / "server.crt"
        self.key_path = directory / "server.key"
        self.trust_path = directory / "trust.pem"
        self.settings_path = directory / "tls.json"

    # -- settings

    def settings(self) -> TlsSettings:
        try:
            raw = json.loads(self.settings_path.read_text(encoding="utf-8"))
            return TlsSettings(**raw).checked()
        except (OSError, ValueError, TypeError):
            return TlsSettings()

    def update_settings(self, changes: dict[str, Any]) -> TlsSettings:
        if not isinstance(changes, dict):
            raise BadRequest("the HTTPS settings must be an object")
        known = set(asdict(TlsSettings()))
        unknown = {name: "unknown setting" for name in changes if name not in known}
        if unknown:
            raise BadRequest("the HTTPS settings were refused; nothing was changed", unknown)
        updated = replace(self.settings(), **changes).checked()
        if updated.https and not self.has_certificate():
            raise BadRequest(
                "HTTPS needs a server certificate first", {"https": "no server certificate"}
            )
        if updated.client_certificates == "required" and not self.trust_path.exists():
            raise BadRequest(
                "client certificates need a trust store first",
                {"client_certificates": "no trust store"},
            )
        private_dir(self.directory)
        write_private(self.settings_path, json.dumps(asdict(updated)).encode())
        return updated

    # -- server certificate

    def has_certificate(self) -> bool:
        return self.cert_path.exists() and self.key_path.exists()

    def certificate(self) -> dict[str, Any] | None:
        if not self.cert_path.exists():
            return None
        chain = _load_pem_chain(self.cert_path.read_bytes())
        return describe_certificate(chain[0]) if chain else None

    def install_pem(self, cert_pem: bytes, key_pem: bytes, password: bytes | None = None) -> dict:
        chain = _load_pem_chain(cert_pem)
        if not chain:
            raise CertificateError("no PEM certificate found", {"certificate": "not PEM"})
        block = _private_key_block(key_pem)
        try:
            key = serialization.load_pem_private_key(block, password=password or None)
        except (ValueError, TypeError) as exc:
            raise CertificateError(
                "the private key could not be read", {"key": str(exc) or "not a PEM key"}
            ) from None
        return self._install(chain, key)

    def install_pkcs12(self, data: bytes, password: bytes | None = None) -> dict:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password or None)
        except ValueError as exc:
            raise CertificateError(
                "the PKCS#12 file could not be read (wrong password?)", {"file": str(exc)}
            ) from None
        if key is None or cert is None:
            raise CertificateError("the PKCS#12 file has no key or no certificate")
        return self._install([cert, *extra], key)

    def generate_self_signed(self, hostname: str | None = None, days: int = 3650) -> dict:
        name = hostname or socket.gethostname() or "mbusgw"
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
        alt: list[x509.GeneralName] = [x509.DNSName(name), x509.DNSName("localhost")]
        alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return self._install([cert], key)

    def _install(self, chain: list[x509.Certificate], key: Any) -> dict:
        if not _same_key(chain[0], key):
            raise CertificateError(
                "the private key does not belong to the certificate", {"key": "does not match"}
            )
        private_dir(self.directory)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        write_private(self.key_path, key_pem)
        write_private(self.cert_path, cert_pem)
        return describe_certificate(chain[0])

    # -- client trust store

    def trust_store(self) -> list[dict[str, Any]]:
        if not self.trust_path.exists():
            return []
        return [describe_certificate(c) for c in _load_pem_chain(self.trust_path.read_bytes())]

    def set_trust_store(self, pem: bytes) -> list[dict[str, Any]]:
        certs = _load_pem_chain(pem)
        if not certs:
            raise CertificateError("no PEM certificate found", {"trust_store": "not PEM"})
        private_dir(self.directory)
        data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        write_private(self.trust_path, data)
        return [describe_certificate(c) for c in certs]

    def https_host(self) -> str | None:
        """The host a plain-HTTP request is sent on to: the first name the server certificate
        is issued for (a client must use one of them for HTTPS to verify), never the request's
        ``Host`` header, which the client chooses. None without a usable name."""
        if not self.cert_path.exists():
            return None
        chain = _load_pem_chain(self.cert_path.read_bytes())
        if not chain:
            return None
        try:
            names = list(
                chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            )
        except x509.ExtensionNotFound:
            names = []
        for name in names:
            if isinstance(name, x509.IPAddress):
                address = name.value
                return f"[{address}]" if address.version == 6 else str(address)
            if isinstance(name, x509.DNSName) and HOSTNAME.match(name.value):
                return name.value
        common = chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        value = common[0].value if common else None
        return value if isinstance(value, str) and HOSTNAME.match(value) else None

    def status(self) -> dict[str, Any]:
        return {
            "settings": asdict(self.settings()),
            "certificate": self.certificate(),
            "trust_store": self.trust_store(),
        }
