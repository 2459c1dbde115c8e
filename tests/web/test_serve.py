"""The web service served by hypercorn under the supervisor, over real loopback sockets:
HTTP, switching to HTTPS through the API, and client-certificate authentication."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from conftest import ADMIN
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
