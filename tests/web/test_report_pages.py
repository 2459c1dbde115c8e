"""The push-report pages over real HTTP against the served gateway on a simulated line, with a
real HTTP receiver: add, edit, refuse per field, delete; send test and send now; the delivery
status; the shared receivers; passwords masked and kept; edits for administrators only."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from report_receivers import HttpReceiver, start_http_receiver
from webrig import SERVED_ADMIN, finished_job, form_values, served_gateway, sign_in_over_http

from mbusgw.gateway.report_catalog import EVENT_KINDS
from mbusgw.gateway.report_settings import ReportSettings
from mbusgw.gateway.settings import SECRET_MASK, InterfaceConfig, Settings, without_masks
from mbusgw.web.settings_form import changes_from_form, form_fields

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=2)
PASSWORD = "Rcv-secret-77"


def problems(page: str) -> dict[str, str]:
    """The per-field problems a refused form shows (input name → message)."""
    found = re.findall(r'<p class="field-error" data-for="([^"]+)">([^<]*)</p>', page)
    return {name: html.unescape(text) for name, text in found}


def new_report(token: str, receiver: HttpReceiver, **fields: str) -> dict[str, str]:
    """The new-report form as an engineer fills it in (an HTTP report with basic auth)."""
    return {
        "csrf_token": token,
        "name": "daily",
        "enabled": "on",
        "kind": "scheduled",
        "template": "3101",
        "schedule": "daily",
        "value_period": "auto",
        "value_interval": "all",
        "http.uri": receiver.url,
        "http.auth": "basic",
        "http.username": "gw",
        "http.password": PASSWORD,
        "ftp.port": "0",
        "ftp.security": "none",
        "retries": "-1",
        "retry_offset_s": "-1",
        **fields,
    }


@asynccontextmanager
async def gateway_with_receiver(
    tmp_path: Path,
) -> AsyncIterator[tuple[Any, httpx.AsyncClient, str, HttpReceiver]]:
    """The served gateway, an administrator signed in (its CSRF token), and an HTTP receiver
    that wants basic authentication."""
    receiver = HttpReceiver(basic_auth=("gw", PASSWORD))
    async with trio.open_nursery() as nursery:
        stop = await start_http_receiver(nursery, receiver)
        async with served_gateway(tmp_path, LINE) as (gateway, http):
            token = await sign_in_over_http(http, *SERVED_ADMIN)
            yield gateway, http, token, receiver
        stop.set()


def job_of(response: httpx.Response) -> str:
    """The id of the job a form post started (it redirects to the job's page)."""
    return response.headers["location"].split("/jobs/")[1].split("?")[0]


async def test_reports_are_added_edited_refused_and_deleted_in_the_pages(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with gateway_with_receiver(tmp_path) as (gateway, http, token, receiver):
            empty = (await http.get("/reports")).text
            assert '<a href="/reports"' in empty and "No reports yet" in empty

            # refused: each problem at its input, nothing stored, the password not echoed
            bad = new_report(token, receiver, retries="many", **{"http.uri": "ftp://x"})
            refused = await http.post("/reports/new", data=bad)
            assert refused.status_code == 400
            assert problems(refused.text) == {
                "retries": "must be a whole number",
                "http.password": "not saved: type the password again",
            }
            bad["retries"] = "-1"
            refused = await http.post("/reports/new", data=bad)
            assert refused.status_code == 400 and "http.uri" in problems(refused.text)
            assert PASSWORD not in refused.text and 'value="ftp://x"' in refused.text
            assert gateway.settings.reports.reports == {}
            no_csrf = new_report(token, receiver)
            del no_csrf["csrf_token"]
            assert (await http.post("/reports/new", data=no_csrf)).status_code == 403

            added = await http.post("/reports/new", data=new_report(token, receiver))
            assert added.status_code == 303, problems(added.text)
            daily = gateway.settings.reports.reports["daily"]
            assert (daily.template, daily.schedule, daily.http.password) == (
                3101,
                "daily",
                PASSWORD,
            )
            taken = await http.post("/reports/new", data=new_report(token, receiver))
            assert problems(taken.text)["name"] == "a report of that name exists already"

            # the edit page as shown, sent back with a new schedule: the password stays
            edit = (await http.get("/report/daily")).text
            assert PASSWORD not in edit and f'value="{SECRET_MASK}"' in edit
            shown = form_values(edit)
            assert shown["http.password"] == SECRET_MASK and shown["template"] == "3101"
            saved = await http.post("/report/daily", data=shown | {"schedule": "hourly"})
            assert saved.status_code == 303, problems(saved.text)
            daily = gateway.settings.reports.reports["daily"]
            assert daily.schedule == "hourly" and daily.http.password == PASSWORD
            assert shown["schedule"] == "daily" and "Every 15 minutes" in edit  # in words
            own = shown | {"schedule": "cron", "schedule.cron": "0 6 * * 1"}  # own times
            assert (await http.post("/report/daily", data=own)).status_code == 303
            assert gateway.settings.reports.reports["daily"].schedule == "0 6 * * 1"
            shown = form_values((await http.get("/report/daily")).text)
            assert (shown["schedule"], shown["schedule.cron"]) == ("cron", "0 6 * * 1")
            # basic auth without the password: refused at the input the settings name
            cleared = await http.post("/report/daily", data=shown | {"http.password": ""})
            assert problems(cleared.text) == {
                "http.auth": "basic authentication needs a user name and a password"
            }
            assert gateway.settings.reports.reports["daily"].http.password == PASSWORD

            # the receivers shared by every report
            receivers = (await http.get("/settings/reports")).text
            common = form_values(receivers)
            assert common["timeouts.http_s"] == "60" and common["system_trust"] == "on"
            zero = await http.post("/settings/reports", data=common | {"timeouts.ftp_s": "0"})
            assert "timeouts.ftp_s" in problems(zero.text)
            email = {"email.host": "mail.example.com", "email.recipients": "ops@example.com"}
            stored = await http.post("/settings/reports", data=common | email)
            assert stored.status_code == 303, problems(stored.text)
            assert gateway.settings.reports.email.host == "mail.example.com"
            # an e-mail report on the default server now passes
            mail = new_report(token, receiver, name="mail", template="1120")
            assert (await http.post("/reports/new", data=mail)).status_code == 303

            # a read-only user sees the reports but changes nothing
            await http.post(
                "/api/v1/users",
                auth=SERVED_ADMIN,
                json={"name": "viewer", "password": "Viewer123", "role": "read-only"},
            )
            async with httpx.AsyncClient(base_url=http.base_url) as viewer:
                viewer_token = await sign_in_over_http(viewer, "viewer", "Viewer123")
                seen = (await viewer.get("/reports")).text
                assert 'data-report="daily"' in seen and "Add a report" not in seen
                assert (await viewer.get("/report/daily")).status_code == 200
                for url in ("/report/daily", "/report/daily/delete", "/report/daily/test"):
                    posted = await viewer.post(url, data={"csrf_token": viewer_token})
                    assert posted.status_code == 403, url
                assert (await viewer.get("/reports/new")).status_code == 403

            deleted = await http.post("/report/daily/delete", data={"csrf_token": token})
            assert deleted.status_code == 303
            assert sorted(gateway.settings.reports.reports) == ["mail"]
            gone = await http.post("/report/daily/delete", data={"csrf_token": token})
            assert gone.status_code == 404
    assert receiver.requests == []  # nothing was sent: the forms only stored settings


async def test_send_test_send_now_and_the_delivery_status(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with gateway_with_receiver(tmp_path) as (gateway, http, token, receiver):
            for form in (
                new_report(token, receiver),
                new_report(token, receiver, name="now", kind="on_demand", template="3130"),
            ):
                added = await http.post("/reports/new", data=form)
                assert added.status_code == 303, problems(added.text)
            listing = (await http.get("/reports")).text
            assert "not sent yet" in listing
            assert "/report/now/run" in listing and "/report/daily/run" not in listing

            tested = await http.post("/report/daily/test", data={"csrf_token": token})
            assert tested.status_code == 303
            test_job = await finished_job(http, job_of(tested))
            sent = await http.post("/report/now/run", data={"csrf_token": token})
            run_job = await finished_job(http, job_of(sent))
            wrong = await http.post("/report/daily/run", data={"csrf_token": token})
            listing = (await http.get("/reports")).text
            reports = await http.get("/api/v1/reports", auth=SERVED_ADMIN)
            status = {r["name"]: r for r in reports.json()["reports"]}
            # the API removes a report, its settings and its cursor
            delivered_cursor = gateway.store.record("cursors", "now")
            missing = await http.delete("/api/v1/reports/nosuch", auth=SERVED_ADMIN)
            removed = await http.delete("/api/v1/reports/now", auth=SERVED_ADMIN)
            cursor = gateway.store.record("cursors", "now")
    assert test_job["state"] == "done", test_job
    assert "test report 'daily' delivered" in test_job["message"]
    assert run_job["state"] == "done" and run_job["result"]["values"] > 0, run_job
    assert wrong.status_code == 404
    bodies = [request.body for request in receiver.requests]
    assert any(b"#test report" in body for body in bodies)  # x101 CSV marked as a test
    assert any(b'"meters"' in body for body in bodies)  # the on-demand x130 JSON
    assert status["now"]["status"] == 1 and status["now"]["last_success"]
    assert 'data-report="now"' in listing and "delivered" in listing
    assert missing.status_code == 404
    assert removed.status_code == 200 and [r["name"] for r in removed.json()["reports"]] == [
        "daily"
    ]
    assert delivered_cursor["until"] and cursor is None


async def test_event_kinds_are_choices_in_words_stored_as_before(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with gateway_with_receiver(tmp_path) as (gateway, http, token, receiver):
            form = (await http.get("/reports/new")).text
            boxes = re.findall(r'<input type="checkbox" name="events" value="([^"]+)"', form)
            assert boxes == list(EVENT_KINDS)
            assert "reading works again" in form and "check none for all" in form
            assert "<code>meter_failed</code>" not in form  # no identifiers to type
            chosen = {"events": ["meter_failed", "report_failed"]}
            alarms = new_report(token, receiver, name="alarms", kind="event", template="3201")
            added = await http.post("/reports/new", data=alarms | chosen)
            assert added.status_code == 303, problems(added.text)
            stored = gateway.settings.reports.reports["alarms"]
            assert stored.events == "meter_failed, report_failed"  # the setting's own form
            edit = (await http.get("/report/alarms")).text
            checked = re.findall(r'name="events" value="([^"]+)" checked', edit)
            assert checked == ["meter_failed", "report_failed"]
            # an unknown kind (not offered, but posted) is refused at the input
            shown = form_values(edit)
            refused = await http.post("/report/alarms", data=shown | {"events": ["gone"]})
            assert refused.status_code == 400
            assert "unknown event gone" in problems(refused.text)["events"]
            assert gateway.settings.reports.reports["alarms"] == stored
            # none checked: every event
            del shown["events"]
            assert (await http.post("/report/alarms", data=shown)).status_code == 303
            assert gateway.settings.reports.reports["alarms"].events == ""


def test_a_settings_form_sent_back_as_shown_changes_nothing() -> None:
    """Every field of the model is on the form, and reading the form back gives the same
    settings (passwords come back as the mask: the stored ones stay)."""
    settings = Settings().updated(
        {
            "reports": {
                "adaptive_retries": False,
                "timeouts": {"http_s": -1},
                "ftp": {"host": "ftp.example.com", "username": "u", "password": "secret-1"},
                "trusted_certificates": "",
            }
        }
    )
    shown = form_fields(ReportSettings, settings.reports)
    posted = {f.name: str(f.value) for f in shown if f.kind != "checkbox"}
    posted |= {f.name: "on" for f in shown if f.kind == "checkbox" and f.value}
    assert posted["ftp.password"] == SECRET_MASK and "secret-1" not in posted.values()
    changes, errors = changes_from_form(ReportSettings, posted)
    assert errors == {}
    assert settings.updated(without_masks({"reports": changes})) == settings
    changes, errors = changes_from_form(ReportSettings, posted | {"ftp.port": "21x"})
    assert errors == {"ftp.port": "must be a whole number"}
