"""FTP and FTPS reports through the standard library's ``ftplib``, in a worker thread.

Explicit FTPS sends AUTH TLS on the plain control connection; implicit FTPS speaks TLS from
the first byte (port 990). Data connections are protected (PROT P) and reuse the control
connection's TLS session, as many servers require. The file is stored under a ``.part`` name
and renamed when the transfer is complete (226), so a receiver that polls the directory never
picks up half a report; the rename's reply is the acceptance.
"""

from __future__ import annotations

import contextlib
import ftplib
import socket
import ssl
from collections.abc import Callable
from typing import Any

import trio

from mbusgw.gateway.errors import DeliveryError
from mbusgw.gateway.report_settings import FtpReceiver
from mbusgw.gateway.services.reports.delivery import explain, within
from mbusgw.gateway.services.reports.templates import Rendered

BLOCK = 64 * 1024


class SessionReusingFtpTls(ftplib.FTP_TLS):
    """Explicit FTPS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            session = getattr(self.sock, "session", None)
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


class ImplicitFtpTls(SessionReusingFtpTls):
    """Implicit FTPS: the control socket is wrapped in TLS as soon as it is connected."""

    _tls_sock: socket.socket | None = None

    @property
    def sock(self) -> socket.socket | None:  # type: ignore[override]
        return self._tls_sock

    @sock.setter
    def sock(self, value: socket.socket | None) -> None:
        if value is not None and not isinstance(value, ssl.SSLSocket):
            value = self.context.wrap_socket(value, server_hostname=self.host)
        self._tls_sock = value


class FtpDelivery:
    protocol = "ftp"

    def __init__(
        self, receiver: FtpReceiver, timeout: float | None, context: Callable[[], ssl.SSLContext]
    ) -> None:
        self.receiver = receiver
        self.timeout = timeout
        self.context = context
        scheme = {"none": "ftp", "explicit": "ftpes", "implicit": "ftps"}[receiver.security]
        self.port = receiver.port or (990 if receiver.security == "implicit" else 21)
        directory = receiver.directory.strip("/")
        self.target = f"{scheme}://{receiver.host}:{self.port}/{directory}"

    async def deliver(self, rendered: Rendered) -> str:
        return await within(
            self.timeout,
            f"FTP to {self.receiver.host}:{self.port}",
            lambda: trio.to_thread.run_sync(self._send, rendered, abandon_on_cancel=True),
        )

    def _client(self) -> ftplib.FTP:
        timeout = self.timeout if self.timeout is not None else None
        security = self.receiver.security
        if security == "none":
            return ftplib.FTP(timeout=timeout)
        kind = ImplicitFtpTls if security == "implicit" else SessionReusingFtpTls
        return kind(context=self.context(), timeout=timeout)

    def _send(self, rendered: Rendered) -> str:
        r = self.receiver
        client = self._client()
        try:
            client.connect(r.host, self.port)
            if isinstance(client, ftplib.FTP_TLS) and r.security == "explicit":
                client.auth()
            client.login(r.username or "anonymous", r.password)
            if isinstance(client, ftplib.FTP_TLS):
                client.prot_p()
            client.set_pasv(r.passive)
            if r.directory:
                client.cwd(r.directory)
            partial = rendered.filename + ".part"
            rendered.file.seek(0)
            stored = client.storbinary(f"STOR {partial}", rendered.file, blocksize=BLOCK)
            renamed = client.rename(partial, rendered.filename)
            with contextlib.suppress(ftplib.Error, OSError):
                client.quit()  # the file is in place: a rude goodbye does not undo that
            return f"{stored.strip()}; {renamed.strip()}"
        except (ftplib.Error, OSError, EOFError) as error:
            client.close()
            raise DeliveryError(f"FTP to {r.host}:{self.port}: {explain(error)}") from None
