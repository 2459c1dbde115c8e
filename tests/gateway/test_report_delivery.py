"""Reports delivered to real servers on loopback: SMTP (plain, STARTTLS with login, TLS), FTP
(plain, explicit and implicit FTPS) and HTTP(S) with basic auth; the cursor moves only when
the receiver accepted the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from report_receivers import (
    PASSWORD,
    USER,
    HttpReceiver,
    ftp_receiver,
    make_certificates,
    smtp_receiver,
    start_http_receiver,
)
from reportkit import (
    filled_store,
    report_settings,
    running_service,
    stored_values,
    values_of_report,
)
from storekit import T0, FixedClock

from mbusgw.gateway.errors import DeliveryError

NOW = T0 + 8 * 900


@pytest.fixture
def certs(tmp_path: Path):
    return make_certificates(tmp_path)


def _email_store(tmp_path: Path, smtp, trusted: str, **email: object):
    """A store with report "daily" by e-mail through ``smtp`` (STARTTLS, the test user)."""
    receiver = {"host": "127.0.0.1", "port": smtp.port, "recipients": "a@example.com"}
    receiver |= {"username": USER, "password": PASSWORD} | email
    settings = report_settings(daily={"template": 1101})
    settings["reports"] |= {"email": receiver, "trusted_certificates": trusted}
    return _store(tmp_path, settings)


def _store(tmp_path: Path, settings: dict):
    store = filled_store(tmp_path, FixedClock(NOW))
    store.update_settings(settings)
    return store


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
async def test_email_delivery(tmp_path: Path, certs, security: str) -> None:
    with smtp_receiver(security, certs) as smtp:
        email = {
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": security,
            "recipients": "meter-data@example.com, backup@example.com",
            "sender": "gateway@example.com",
        }
        if security != "none":
            email |= {"username": USER, "password": PASSWORD}
        settings = report_settings(daily={"template": 1101})
        settings["reports"] |= {"email": email, "trusted_certificates": certs.ca_pem}
        store = _store(tmp_path, settings)
        with trio.fail_after(20):
            async with running_service(store, FixedClock(NOW)) as service:
                outcome = await service.runner.attempt("daily")
                status = service.status_of("daily")
    assert outcome.ok and outcome.reply.startswith("250")
    assert len(smtp.messages) == 1
    sender, recipients, message = smtp.messages[0]
    assert sender == "gateway@example.com"
    assert recipients == ["meter-data@example.com", "backup@example.com"]
    assert message["Subject"] == "mbusgw: Meter report daily"
    assert smtp.logins == ([] if security == "none" else [USER])
    [(name, data)] = smtp.attachments()
    assert name.endswith(".csv") and name.startswith("mbusgw_daily_")
    assert values_of_report(data) == stored_values(store)
    assert store.record("cursors", "daily")["meters"] == {
        "m1": NOW - 900 + 7,
        "m2": NOW - 900 + 7,
        "m3": NOW - 900 + 7,
    }
    assert status.last_success is not None and status.last_error is None
    assert status.values_delivered == outcome.values == len(stored_values(store))


async def test_email_login_refused_leaves_the_cursor(tmp_path: Path, certs) -> None:
    with smtp_receiver("starttls", certs) as smtp:
        store = _email_store(tmp_path, smtp, certs.ca_pem, password="wrong-password")
        with trio.fail_after(20):
            async with running_service(store, FixedClock(NOW)) as service:
                with pytest.raises(DeliveryError, match="535"):
                    await service.runner.attempt("daily")
                status = service.status_of("daily")
    assert smtp.messages == []
    assert store.record("cursors", "daily") is None
    assert status.code == 3 and "535" in status.last_error
    assert status.values_pending == len(stored_values(store))
    assert "wrong-password" not in status.last_error


async def test_starttls_refuses_an_untrusted_server(tmp_path: Path, certs) -> None:
    (tmp_path / "other").mkdir()
    other = make_certificates(tmp_path / "other")  # a CA that did not sign the server
    with smtp_receiver("starttls", certs) as smtp:
        store = _email_store(tmp_path, smtp, other.ca_pem)
        store.update_settings({"reports": {"system_trust": False}})
        with trio.fail_after(20):
            async with running_service(store, FixedClock(NOW)) as service:
                with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
                    await service.runner.attempt("daily")
    assert smtp.messages == [] and smtp.logins == []
    assert store.record("cursors", "daily") is None


@pytest.mark.parametrize("security", ["none", "explicit", "implicit"])
async def test_ftp_delivery(tmp_path: Path, certs, security: str) -> None:
    with ftp_receiver(tmp_path / "ftp", security, certs) as ftp:
        (ftp.root / "incoming").mkdir()
        receiver = {
            "host": "127.0.0.1",
            "port": ftp.port,
            "security": security,
            "username": USER,
            "password": PASSWORD,
            "directory": "incoming",
        }
        # the server's own certificate alone is enough to trust it (a partial chain)
        settings = report_settings(values={"template": 2101, "ftp": receiver})
        settings["reports"] |= {"trusted_certificates": certs.server_pem, "system_trust": False}
        store = _store(tmp_path, settings)
        with trio.fail_after(20):
            async with running_service(store, FixedClock(NOW)) as service:
                outcome = await service.runner.attempt("values")
                status = service.status_of("values")
        files = ftp.files()
    assert outcome.ok and outcome.reply.startswith("226")
    [(name, data)] = files.items()
    assert (ftp.root / "incoming" / name).exists() and not name.endswith(".part")
    assert values_of_report(data) == stored_values(store)
    assert store.record("cursors", "values") is not None
    scheme = {"none": "ftp", "explicit": "ftpes", "implicit": "ftps"}[security]
    assert status.target == f"{scheme}://127.0.0.1:{ftp.port}/incoming"


async def test_ftp_wrong_directory_is_a_failure(tmp_path: Path, certs) -> None:
    with ftp_receiver(tmp_path / "ftp", "none") as ftp:
        receiver = {"host": "127.0.0.1", "port": ftp.port, "username": USER, "password": PASSWORD}
        settings = report_settings(values={"template": 2101})
        settings["reports"] |= {"ftp": receiver | {"directory": "missing"}}
        store = _store(tmp_path, settings)
        with trio.fail_after(20):
            async with running_service(store, FixedClock(NOW)) as service:
                with pytest.raises(DeliveryError, match="550"):
                    await service.runner.attempt("values")
    assert store.record("cursors", "values") is None


@pytest.mark.parametrize("tls", [False, True])
async def test_http_delivery_with_basic_auth(tmp_path: Path, certs, tls: bool) -> None:
    receiver = HttpReceiver(basic_auth=(USER, PASSWORD))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stop = await start_http_receiver(nursery, receiver, certs=certs if tls else None)
            http = {"uri": receiver.url, "auth": "basic", "username": USER, "password": PASSWORD}
            settings = report_settings(push={"template": 3130})
            settings["reports"] |= {"http": http, "trusted_certificates": certs.ca_pem}
            store = _store(tmp_path, settings)
            async with running_service(store, FixedClock(NOW)) as service:
                outcome = await service.runner.attempt("push")
            stop.set()
    assert outcome.ok and outcome.reply == "200 OK"
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/reports"
    assert request.headers["content-type"] == "application/json"
    assert int(request.headers["content-length"]) == len(request.body)
    assert request.headers["content-disposition"].startswith('attachment; filename="mbusgw_push_')
    assert b'"meters"' in request.body
    assert store.record("cursors", "push") is not None


async def test_http_error_status_and_bad_password_leave_the_cursor(tmp_path: Path) -> None:
    receiver = HttpReceiver(status=503)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stop = await start_http_receiver(nursery, receiver)
            settings = report_settings(push={"template": 3101, "http": {"uri": receiver.url}})
            store = _store(tmp_path, settings)
            async with running_service(store, FixedClock(NOW)) as service:
                with pytest.raises(DeliveryError, match="503"):
                    await service.runner.attempt("push")
                receiver.status, receiver.basic_auth = 200, (USER, PASSWORD)
                with pytest.raises(DeliveryError, match="401"):
                    await service.runner.attempt("push")
            stop.set()
    assert receiver.requests == []
    assert store.record("cursors", "push") is None


async def test_https_refuses_an_untrusted_server(tmp_path: Path, certs) -> None:
    receiver = HttpReceiver()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stop = await start_http_receiver(nursery, receiver, certs=certs)
            settings = report_settings(push={"template": 3101, "http": {"uri": receiver.url}})
            settings["reports"]["system_trust"] = True  # the test CA is not a system CA
            store = _store(tmp_path, settings)
            async with running_service(store, FixedClock(NOW)) as service:
                with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
                    await service.runner.attempt("push")
            stop.set()
    assert receiver.requests == []
