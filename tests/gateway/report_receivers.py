"""Real receiving servers on loopback for the report tests, with certificates made here.

- ``smtp_receiver``: aiosmtpd in its own thread: plain, STARTTLS (login required over TLS) or
  implicit TLS; it keeps every accepted message.
- ``ftp_receiver``: pyftpdlib in its own thread: plain FTP, explicit FTPS (AUTH TLS) or implicit
  FTPS (TLS from the first byte); files land in a temporary directory.
- ``http_receiver``: a small ASGI app under hypercorn's trio worker, in the test's own trio
  loop (so it follows MockClock); HTTP or HTTPS, optional basic auth, answers 200 or a status
  the test sets, and keeps every request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import trio
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from hypercorn.config import Config
from hypercorn.trio import serve
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

USER, PASSWORD = "reporter", "s3cret-pass"


@dataclass
class Certificates:
    """A test CA and a server certificate for 127.0.0.1 and localhost."""

    ca: trustme.CA
    server: trustme.LeafCert
    chain_file: Path  # key and certificate chain, for servers that read files

    @property
    def ca_pem(self) -> str:
        return self.ca.cert_pem.bytes().decode()

    @property
    def server_pem(self) -> str:
        """The server's own certificate (trusted alone as a partial chain)."""
        return self.server.cert_chain_pems[0].bytes().decode()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        return context


def make_certificates(directory: Path) -> Certificates:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    chain = directory / "server.pem"
    server.private_key_and_cert_chain_pem.write_to_path(chain)
    return Certificates(ca, server, chain)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- SMTP ---------------------------------------------------------------------------------------


@dataclass
class SmtpReceiver:
    port: int
    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.original_content)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth: Any):
        ok = isinstance(auth, LoginPassword) and (auth.login, auth.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            self.logins.append(auth.login.decode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    def attachments(self) -> list[tuple[str, bytes]]:
        found = []
        for _, _, message in self.messages:
            for part in message.walk():
                if part.get_filename():
                    found.append((part.get_filename(), part.get_payload(decode=True)))
        return found


@contextlib.contextmanager
def smtp_receiver(
    security: str = "none", certs: Certificates | None = None
) -> Iterator[SmtpReceiver]:
    """``security``: none (no login), starttls (login required, only over TLS), tls."""
    receiver = SmtpReceiver(free_port())
    kwargs: dict[str, Any] = {}
    if security == "starttls":
        kwargs = {
            "tls_context": certs.server_context(),
            "require_starttls": True,
            "authenticator": receiver.authenticate,
            "auth_required": True,
            "auth_require_tls": True,
        }
    elif security == "tls":
        kwargs = {
            "ssl_context": certs.server_context(),
            "authenticator": receiver.authenticate,
            "auth_required": True,
            "auth_require_tls": False,  # aiosmtpd cannot tell the whole connection is TLS
        }
    # a plain asyncio loop of the server's own thread, whatever loop policy is installed
    loop = asyncio.SelectorEventLoop()
    controller = Controller(receiver, loop=loop, hostname="127.0.0.1", port=receiver.port, **kwargs)
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()


# -- FTP ----------------------------------------------------------------------------------------


class ImplicitTlsHandler(TLS_FTPHandler):
    """Implicit FTPS: TLS from the first byte; the 220 greeting comes after the handshake."""

    def handle(self) -> None:
        self.secure_connection(self.ssl_context)

    def handle_ssl_established(self) -> None:
        TLS_FTPHandler.handle(self)


@dataclass
class FtpReceiver:
    port: int
    root: Path

    def files(self) -> dict[str, bytes]:
        return {
            path.name: path.read_bytes() for path in sorted(self.root.rglob("*")) if path.is_file()
        }


@contextlib.contextmanager
def ftp_receiver(
    root: Path, security: str = "none", certs: Certificates | None = None
) -> Iterator[FtpReceiver]:
    """``security``: none, explicit (TLS required on control and data) or implicit."""
    root.mkdir(parents=True, exist_ok=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmw")
    if security == "none":
        handler = type("PlainHandler", (FTPHandler,), {})
    else:
        base = ImplicitTlsHandler if security == "implicit" else TLS_FTPHandler
        handler = type(
            "TlsHandler",
            (base,),
            {
                "certfile": str(certs.chain_file),
                "ssl_context": None,
                "tls_control_required": True,
                "tls_data_required": True,
            },
        )
    handler.authorizer = authorizer
    handler.passive_ports = None
    server = FTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"timeout": 0.05, "handle_exit": False}, daemon=True
    )
    thread.start()
    try:
        yield FtpReceiver(server.address[1], root)
    finally:
        server.close_all()
        thread.join(timeout=10)


# -- HTTP ---------------------------------------------------------------------------------------


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """An ASGI app that keeps every request and answers ``status``."""

    status: int = 200
    delay: float = 0.0  # seconds before answering (trio time)
    basic_auth: tuple[str, str] | None = None
    requests: list[HttpRequest] = field(default_factory=list)
    url: str = ""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        await trio.sleep(self.delay)
        status = self.status
        if self.basic_auth is not None:
            expected = "Basic " + base64.b64encode(":".join(self.basic_auth).encode()).decode()
            if headers.get("authorization") != expected:
                status = 401
        if status == 200:
            self.requests.append(HttpRequest(scope["method"], scope["path"], headers, body))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"no"})


async def start_http_receiver(
    nursery: trio.Nursery,
    receiver: HttpReceiver,
    *,
    certs: Certificates | None = None,
    port: int = 0,
) -> trio.Event:
    """Serve ``receiver`` until the returned event is set; fills in ``receiver.url``."""
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    if certs is not None:
        config.certfile = str(certs.chain_file)
        config.keyfile = str(certs.chain_file)
    stop = trio.Event()
    binds = await nursery.start(
        lambda task_status: serve(
            receiver, config, shutdown_trigger=stop.wait, task_status=task_status
        )
    )
    receiver.url = binds[0] + "/reports"
    return stop
