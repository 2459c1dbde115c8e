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

import json
import re
import socket
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from mbusgw.gateway.facade import private_dir, write_private
from mbusgw.web.errors import BadRequest

CLIENT_MODES = ("off", "required")
HOSTNAME = re.compile(r"^(?=.{1,64}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*$")


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
        x509 = _certificates()
        chain = x509.load_pem_chain(self.cert_path.read_bytes())
        return x509.describe_certificate(chain[0]) if chain else None

    def install_pem(self, cert_pem: bytes, key_pem: bytes, password: bytes | None = None) -> dict:
        x509 = _certificates()
        chain = x509.load_pem_chain(cert_pem)
        if not chain:
            raise x509.CertificateError("no PEM certificate found", {"certificate": "not PEM"})
        return self._install(chain, x509.read_key(key_pem, password))

    def install_pkcs12(self, data: bytes, password: bytes | None = None) -> dict:
        return self._install(*_certificates().read_pkcs12(data, password))

    def generate_self_signed(self, hostname: str | None = None, days: int = 3650) -> dict:
        name = hostname or socket.gethostname() or "mbusgw"
        return self._install(*_certificates().self_signed(name, days))

    def _install(self, chain: list, key: Any) -> dict:
        x509 = _certificates()
        cert_pem, key_pem = x509.server_pem(chain, key)
        private_dir(self.directory)
        write_private(self.key_path, key_pem)
        write_private(self.cert_path, cert_pem)
        return x509.describe_certificate(chain[0])

    # -- client trust store

    def trust_store(self) -> list[dict[str, Any]]:
        if not self.trust_path.exists():
            return []
        x509 = _certificates()
        return [
            x509.describe_certificate(c) for c in x509.load_pem_chain(self.trust_path.read_bytes())
        ]

    def set_trust_store(self, pem: bytes) -> list[dict[str, Any]]:
        x509 = _certificates()
        certs = x509.load_pem_chain(pem)
        if not certs:
            raise x509.CertificateError("no PEM certificate found", {"trust_store": "not PEM"})
        private_dir(self.directory)
        write_private(self.trust_path, x509.chain_pem(certs))
        return [x509.describe_certificate(c) for c in certs]

    def https_host(self) -> str | None:
        """The host a plain-HTTP request is sent on to: the first name the server certificate
        is issued for (a client must use one of them for HTTPS to verify), never the request's
        ``Host`` header, which the client chooses. None without a usable name."""
        if not self.cert_path.exists():
            return None
        x509 = _certificates()
        chain = x509.load_pem_chain(self.cert_path.read_bytes())
        return x509.first_host_name(chain, HOSTNAME) if chain else None

    def status(self) -> dict[str, Any]:
        return {
            "settings": asdict(self.settings()),
            "certificate": self.certificate(),
            "trust_store": self.trust_store(),
        }


def _certificates() -> ModuleType:
    """The certificate functions; cryptography's X.509 code (about 2 MB resident) is loaded
    with them, on the first certificate handled, not by every gateway that serves plain HTTP."""
    from mbusgw.web import certificates

    return certificates
