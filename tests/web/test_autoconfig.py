"""Autoconfiguration end to end: a real gateway fetches a file of terminal commands from a real
HTTPS server on loopback (a test CA in the report trust store, basic auth), applies it all or
nothing, skips an unchanged file, and shows its status in the API and on a page; the cron
schedule (with ``?`` and ``|``) decides when it fetches, under a mock clock."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import trio
import trio.testing
from report_receivers import PASSWORD, USER, HttpReceiver, make_certificates, start_http_receiver
from webclient import Client, body, complete_first_login
from webrig import open_rig

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.clock import TrioWallClock
from mbusgw.gateway.cron import CronSchedule
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.web.app import create_app
from mbusgw.web.terminal.autoconfig import AutoconfigService, autoconfig_service

sys.path.append(str(Path(__file__).parents[1] / "gateway"))
from gatewaykit import seed_settings  # noqa: E402

GOOD = b"""# the plant's settings
set identity.device_name Plant 7
set reading.schedule 0 ?1-4 * * *|30 12 * * *

set log.min_level 1
install Cellar;;9600;primary;40
"""
BAD = b"""set identity.device_name Somebody else
set reading.schedule every full moon
frobnicate everything
restart
"""
QUIET = {"modbus": {"enabled": False}, "reading": {"schedule": "0 0 1 1 *", "read_at_start": False}}


async def test_a_file_over_https_with_basic_auth_is_applied_all_or_nothing(
    tmp_path: Path,
) -> None:
    certs = make_certificates(tmp_path)
    receiver = HttpReceiver(basic_auth=(USER, PASSWORD), content=GOOD)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            stop = await start_http_receiver(nursery, receiver, certs=certs)
            url = receiver.url.replace("/reports", "/plant.cad")
            assert url.startswith("https://127.0.0.1:")
            autoconfig = {"enabled": True, "url": url, "auth": "basic", "schedule": "0 0 1 1 *"}
            seed_settings(
                tmp_path,
                {
                    **QUIET,
                    "reports": {"trusted_certificates": certs.ca_pem, "system_trust": False},
                    "autoconfig": {**autoconfig, "username": USER, "password": PASSWORD},
                },
            )
            interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=2),)
            gateway = Gateway(
                StartupConfig(tmp_path, interfaces=interfaces), northbound=[autoconfig_service]
            )
            await nursery.start(gateway.run)
            service = gateway.running_northbound["autoconfig"]
            assert isinstance(service, AutoconfigService)

            status = await service.run_once()
            assert (status.result, status.error) == ("applied", None)
            assert gateway.settings.identity.device_name == "Plant 7"
            assert gateway.settings.reading.schedule == "0 ?1-4 * * *|30 12 * * *"
            assert gateway.settings.log.min_level == 1
            assert [m.primary_address for m in gateway.meters if m.position == "Cellar"] == [40]
            assert receiver.requests[-1].path == "/plant.cad"
            assert status.changes[0] == "set identity.device_name"  # names, never values
            applied = status.last_applied

            status = await service.run_once()
            assert status.result == "unchanged" and status.last_applied == applied
            assert len(receiver.requests) == 2
            restarted = AutoconfigService(gateway)  # what was applied survives a restart
            assert (await restarted.run_once()).result == "unchanged"
            assert restarted.status.changes == status.changes

            receiver.content = BAD
            before = gateway.settings
            status = await service.run_once()
            assert status.result == "refused"
            assert set(status.refused) == {"reading.schedule", "line 3", "line 4"}
            assert "cannot be used in a file" in status.refused["line 4"]
            assert gateway.settings == before  # the good first line did not apply either
            assert len(gateway.meters) == 3

            app = create_app(gateway)
            async with app.test_app():
                api = Client(app, None)
                await complete_first_login(api)
                shown = body(await api.get("/api/v1/autoconfig"))
                assert shown["result"] == "refused" and shown["url"] == url
                assert shown["last_applied"] == applied.isoformat(timespec="seconds")
                assert "line 3" in shown["refused"]
                page = await api.get("/autoconfig")
                assert page.status_code == 200
                assert b"unknown command &#39;frobnicate&#39;" in page.body_bytes

                # a wrong password: the fetch fails, said as it is, and nothing changes
                response = await api.patch(
                    "/api/v1/settings", json={"autoconfig": {"password": "not-it"}}
                )
                assert response.status_code == 200
                service = gateway.running_northbound["autoconfig"]
                shown = body(await api.post("/api/v1/autoconfig/run"))
                assert shown["result"] == "fetch_failed" and "HTTP 401" in shown["error"]
            await gateway.writer.flush()  # type: ignore[union-attr]
            texts = [e.text for e in gateway.store.system_log(limit=200)]  # type: ignore[union-attr]
            assert any(t.startswith("file refused, nothing changed: line 3:") for t in texts)
            assert not any(PASSWORD in t for t in texts)
            gateway.stop()
            stop.set()


async def spin_until(done: Callable[[], bool], spins: int = 1_000_000) -> None:
    """Yield until ``done()``: under a mock clock that stands still, sleeping would never
    return, while I/O still runs at each checkpoint; the bound stops a test that hangs."""
    for _ in range(spins):
        if done():
            return
        await trio.lowlevel.checkpoint()
    raise AssertionError("never happened")


async def test_the_cron_schedule_decides_when_the_file_is_fetched(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """``?`` and ``|`` as the product reads them; the wall clock moves by the mock clock (time
    stands still unless the test moves it) while the file comes over a real loopback socket
    (plain HTTP, no auth)."""
    wall = TrioWallClock(datetime(2026, 3, 2, 0, 10, tzinfo=UTC))
    async with trio.open_nursery() as nursery:
        receiver = HttpReceiver(content=b"set identity.device_name Scheduled\n")
        stop = await start_http_receiver(nursery, receiver)
        rig = await open_rig(nursery, tmp_path, wall)
        schedule = "0 ?1-4 * * *|45 0 * * *"
        await rig.update_settings(
            {"autoconfig": {"enabled": True, "url": receiver.url, "schedule": schedule}}
        )
        service = AutoconfigService(rig)
        await nursery.start(service.run)
        expected = CronSchedule(schedule, seed=str(tmp_path)).next_after(wall.now())
        assert service.status.next_fetch == expected
        assert expected == datetime(2026, 3, 2, 0, 45, tzinfo=UTC)
        assert service.status.result == "never"
        mock_clock.jump((expected - wall.now()).total_seconds())
        await spin_until(lambda: service.status.result != "never")  # real sockets meanwhile
        assert service.status.result == "applied"
        assert rig.settings.identity.device_name == "Scheduled"
        following = CronSchedule(schedule, seed=str(tmp_path)).next_after(expected)
        await spin_until(lambda: service.status.next_fetch == following)
        assert 1 <= following.hour <= 4 and following.minute == 0
        rig.writer.close()
        nursery.cancel_scope.cancel()
        stop.set()
