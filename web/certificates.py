"""The X.509 work of HTTPS: reading, checking, describing and generating certificates and keys.

Pure functions over PEM/PKCS#12 bytes and ``cryptography`` objects; the files they end up in
are ``web.tls``'s business. Kept apart so that cryptography's X.509 code is loaded only when a
certificate is actually handled, not by every gateway that never turns HTTPS on.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from mbusgw.web.errors import BadRequest


class CertificateError(BadRequest):
    code = "invalid_certificate"


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


def same_key(cert: x509.Certificate, key: Any) -> bool:
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    return cert.public_key().public_bytes(encoding, public) == key.public_key().public_bytes(
        encoding, public
    )


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def private_key_block(pem: bytes) -> bytes:
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


def read_key(pem: bytes, password: bytes | None) -> Any:
    """The private key of a PEM file (a combined file holds the certificates too)."""
    try:
        return serialization.load_pem_private_key(private_key_block(pem), password=password or None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(
            "the private key could not be read", {"key": str(exc) or "not a PEM key"}
        ) from None


def read_pkcs12(data: bytes, password: bytes | None) -> tuple[list[x509.Certificate], Any]:
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password or None)
    except ValueError as exc:
        raise CertificateError(
            "the PKCS#12 file could not be read (wrong password?)", {"file": str(exc)}
        ) from None
    if key is None or cert is None:
        raise CertificateError("the PKCS#12 file has no key or no certificate")
    return [cert, *extra], key


def self_signed(name: str, days: int) -> tuple[list[x509.Certificate], Any]:
    """A certificate for ``name``, ``localhost`` and the loopback addresses, with its new key."""
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
    return [cert], key


def chain_pem(chain: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)


def server_pem(chain: list[x509.Certificate], key: Any) -> tuple[bytes, bytes]:
    """The certificate chain and the key as the PEM files to write, once the key is checked to
    belong to the certificate."""
    if not same_key(chain[0], key):
        raise CertificateError(
            "the private key does not belong to the certificate", {"key": "does not match"}
        )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return chain_pem(chain), key_pem


def first_host_name(chain: list[x509.Certificate], usable: re.Pattern[str]) -> str | None:
    """The first name the certificate is issued for that a browser can be sent to: an address
    or a host name (``usable``) of its alternative names, else its common name; None without one."""
    try:
        names = list(chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        names = []
    for name in names:
        if isinstance(name, x509.IPAddress):
            address = name.value
            return f"[{address}]" if address.version == 6 else str(address)
        if isinstance(name, x509.DNSName) and usable.match(name.value):
            return name.value
    common = chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = common[0].value if common else None
    return value if isinstance(value, str) and usable.match(value) else None
