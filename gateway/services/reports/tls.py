"""TLS for HTTPS and FTPS reports: the report trust store plus (optionally) the system's.

The trust store holds PEM certificates of receiving servers or of the authorities that signed
them (manual 6.24.3). Partial chains are accepted, so the server's own certificate (or an
intermediate) is enough to trust it, as when a certificate is uploaded to the product.
Host names are always checked.
"""

from __future__ import annotations

import ssl


def client_context(certificates: str, *, system_trust: bool = True) -> ssl.SSLContext:
    """An ``SSLContext`` for report deliveries; raises ``ssl.SSLError`` on bad PEM text."""
    if system_trust:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, checks host names
    if certificates.strip():
        context.load_verify_locations(cadata=certificates)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
