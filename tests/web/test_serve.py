"""The web service served by hypercorn under the supervisor, over real loopback sockets:
HTTP, switching to HTTPS through the API, and client-certificate authentication."""

from __future__ import annotations

import ssl
from pathlib import Path

import h11
import httpx
import pytest
import trio
import trio.testing
import trustme
from webclient import ADMIN
from webrig import free_port

from mbusgw.web.serve import WebService


async def wait_for_reload(service: WebService, reloads: int, url: str) -> None:
    """Until the web service serves again with its new settings."""
    while not (service.reloads > reloads and url in service.urls):
        await trio.sleep(0.02)


def client_context(ca: trustme.CA, tmp: Path, client: trustme.LeafCert | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client is not None:
        chain = tmp / "client.pem"
        client.private_key_and_cert_chain_pem.write_to_path(str(chain))
        context.load_cert_chain(str(chain))
    return context


async def test_http_then_https_with_client_certificates(gateway, tmp_path: Path, nursery) -> None:
    http_port, https_port = free_port(), free_port()
    service = WebService(gateway, "127.0.0.1", http_port)
    with trio.fail_after(30):
        await nursery.start(gateway.supervisor.run, [service])
        assert service.urls == [f"http://127.0.0.1:{http_port}"]
        base = f"http://127.0.0.1:{http_port}"
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/api/v1/openapi.json")).status_code == 200
            assert (await http.get("/api/v1/meters")).status_code == 401
            first = await http.post(
                "/api/v1/me/password",
                auth=("admin", "admin"),
                json={"current_password": "admin", "new_username": ADMIN[0]}
                | {"new_password": ADMIN[1]},
            )
            assert first.status_code == 200
            login = await http.get("/login")
            assert "mbusgw_session" in login.headers["set-cookie"]
            assert "Secure" not in login.headers["set-cookie"]

            server_ca, client_ca, stranger_ca = trustme.CA(), trustme.CA(), trustme.CA()
            server = server_ca.issue_cert("127.0.0.1", "localhost")
            upload = await http.post(
                "/api/v1/tls/certificate",
                auth=ADMIN,
                files={
                    "file": ("server.crt", server.cert_chain_pems[0].bytes()),
                    "key": ("server.key", server.private_key_pem.bytes()),
                },
            )
            assert upload.status_code == 200, upload.text
            assert upload.json()["self_signed"] is False
            wrong_key = await http.post(
                "/api/v1/tls/certificate",
                auth=ADMIN,
                files={
                    "file": ("server.crt", server.cert_chain_pems[0].bytes()),
                    "key": ("other.key", client_ca.issue_cert("x").private_key_pem.bytes()),
                },
            )
            assert wrong_key.status_code == 400
            assert wrong_key.json()["error"]["code"] == "invalid_certificate"
            trust = await http.put(
                "/api/v1/tls/trust-store",
                auth=ADMIN,
                content=client_ca.cert_pem.bytes(),
                headers={"Content-Type": "application/x-pem-file"},
            )
            assert trust.status_code == 200
            reloads = service.reloads
            switched = await http.patch(
                "/api/v1/tls",
                auth=ADMIN,
                json={"https": True, "https_port": https_port, "client_certificates": "required"},
            )
            assert switched.status_code == 200, switched.text
        await wait_for_reload(service, reloads, f"https://127.0.0.1:{https_port}")

        async with httpx.AsyncClient(base_url=base) as http:
            redirect = await http.get("/meters?passive=1")
            assert redirect.status_code == 308
            assert (
                redirect.headers["location"] == f"https://127.0.0.1:{https_port}/meters?passive=1"
            )

        secure = f"https://127.0.0.1:{https_port}"
        trusted = client_context(server_ca, tmp_path, client_ca.issue_cert("plc@site"))
        async with httpx.AsyncClient(base_url=secure, verify=trusted) as https:
            response = await https.get("/api/v1/device", auth=ADMIN)
            assert response.status_code == 200
            login = await https.get("/login")
            assert "Secure" in login.headers["set-cookie"]

        untrusted = client_context(server_ca, tmp_path, stranger_ca.issue_cert("intruder"))
        for context in (untrusted, client_context(server_ca, tmp_path, None)):
            async with httpx.AsyncClient(base_url=secure, verify=context) as https:
                with pytest.raises(httpx.TransportError):
                    await https.get("/api/v1/openapi.json")


async def test_self_signed_certificate(gateway) -> None:
    from mbusgw.web.tls import TlsFiles

    files = TlsFiles(gateway.startup.data_dir / "tls")
    info = await trio.to_thread.run_sync(files.generate_self_signed, "gw.example")
    assert info["self_signed"] and "gw.example" in info["subject"]
    assert (files.key_path.stat().st_mode & 0o777) == 0o600
    assert files.status()["certificate"]["sha256"] == info["sha256"]


class RawHttp:
    """One keep-alive HTTP/1.1 connection driven byte by byte (h11 parses the answers)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)

    async def send_head(self, method: str, target: str, length: int | None = None) -> None:
        headers = [("Host", "gateway"), ("Content-Type", "application/json")]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        request = h11.Request(method=method, target=target, headers=headers)
        await self.stream.send_all(self.http.send(request))
        if length is None:
            await self.stream.send_all(self.http.send(h11.EndOfMessage()))

    async def send_body(self, body: bytes) -> None:
        await self.stream.send_all(self.http.send(h11.Data(data=body)))
        await self.stream.send_all(self.http.send(h11.EndOfMessage()))

    async def response(self) -> tuple[h11.Response, bytes]:
        head, body = None, b""
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                self.http.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return head, body
            elif isinstance(event, h11.ConnectionClosed):
                raise AssertionError("the server closed the connection without an answer")

    def next_cycle(self) -> None:
        self.http.start_next_cycle()


async def test_requests_answered_before_their_body_arrived(gateway, nursery) -> None:
    """A request refused from its headers alone (here: no credentials) is
    answered once its body has arrived, so the connection serves the next request; a body
    announced larger than any upload is not waited for, and the connection is closed."""
    port = free_port()
    service = WebService(gateway, "127.0.0.1", port)
    body = b'{"name": "x", "password": "y"}'
    with trio.fail_after(10):
        await nursery.start(gateway.supervisor.run, [service])
        client = RawHttp(await trio.open_tcp_stream("127.0.0.1", port))
        await client.send_head("POST", "/api/v1/users", len(body))
        await trio.testing.wait_all_tasks_blocked()  # the server has done what it would do
        await client.send_body(body)
        refused, _ = await client.response()
        client.next_cycle()
        await client.send_head("GET", "/api/v1/openapi.json")
        document, text = await client.response()

        huge = RawHttp(await trio.open_tcp_stream("127.0.0.1", port))
        await huge.send_head("POST", "/api/v1/users", 10**10)
        closing, _ = await huge.response()
    assert refused.status_code == 401 and (b"connection", b"close") not in refused.headers
    assert document.status_code == 200 and b'"openapi"' in text
    assert closing.status_code == 401 and (b"connection", b"close") in closing.headers


def test_a_slow_start_is_waited_for_not_restarted(tmp_path: Path) -> None:
    """On a slow or busy CPU (a gateway under a CPU quota of 1 % of one core) the app's
    start-up can take longer than hypercorn's default 60 s; the server waits for it instead of
    failing the web, which the supervisor would then start again at the cost of the same CPU."""
    from mbusgw.web.serve import STARTUP_TIMEOUT, server_config
    from mbusgw.web.tls import TlsFiles

    config = server_config("127.0.0.1", 8080, TlsFiles(tmp_path / "tls"))
    assert config.startup_timeout == STARTUP_TIMEOUT >= 600
