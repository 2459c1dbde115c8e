"""The Integrations page's settings forms over real HTTP against the served gateway: SNMP (and
its notification receivers, each on a page of its own), MQTT and the metrics. Each form is
stored whole or not at all, with each refusal at its input; passwords, the community and the
client key are never shown and are kept when the masked form comes back; only administrators
change anything."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
import trio
import trustme
from webrig import SERVED_ADMIN, form_values, served_gateway, sign_in_over_http

from mbusgw.gateway.settings import SECRET_MASK, InterfaceConfig

LINE = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=1)
MQTT_PASSWORD = "Mqtt-secret-41"
COMMUNITY = "Agent-comm-77"
TRAP_COMMUNITY = "Trap-comm-88"
TOKEN = "Scrape-token-93"


def problems(page: str) -> dict[str, str]:
    """The per-field problems a refused form shows (input name → message)."""
    found = re.findall(r'<p class="field-error" data-for="([^"]+)">([^<]*)</p>', page)
    return {name: html.unescape(text) for name, text in found}


async def shown_form(http: httpx.AsyncClient, action: str, url: str = "/integrations") -> dict:
    return form_values((await http.get(url)).text, action)


async def test_mqtt_snmp_and_metrics_settings_in_the_page(tmp_path: Path) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("gateway.example")
    certificate = client.cert_chain_pems[0].bytes().decode()
    key = client.private_key_pem.bytes().decode()
    with trio.fail_after(90):
        async with served_gateway(tmp_path, LINE) as (gateway, http):
            token = await sign_in_over_http(http, *SERVED_ADMIN)
            page = (await http.get("/integrations")).text
            for section in ("snmp", "mqtt", "metrics"):
                assert f'action="/integrations/{section}"' in page

            # MQTT: refused as a whole (the topic prefix with it is not stored), at the inputs
            mqtt = await shown_form(http, "/integrations/mqtt")
            assert mqtt["csrf_token"] == token and mqtt["topic_prefix"] == "mbusgw"
            wanted = mqtt | {
                "host": "broker.example",
                "password": MQTT_PASSWORD,
                "client_certificate": certificate,
                "topic_prefix": "site-a",
            }
            refused = await http.post("/integrations/mqtt", data=wanted | {"qos": "2"})
            assert refused.status_code == 400
            assert problems(refused.text) == {
                "qos": "must be between 0 and 1",
                "password": "not saved: type the password again",
            }
            assert MQTT_PASSWORD not in refused.text and 'value="site-a"' in refused.text
            no_key = await http.post("/integrations/mqtt", data=wanted)
            assert problems(no_key.text)["client_key"].startswith("a client certificate needs")
            assert gateway.settings.mqtt.topic_prefix == "mbusgw"
            assert gateway.settings.mqtt.host == "" and not gateway.settings.mqtt.password
            saved = await http.post("/integrations/mqtt", data=wanted | {"client_key": key})
            assert saved.status_code == 303, problems(saved.text)
            stored = gateway.settings.mqtt
            assert (stored.host, stored.password, stored.topic_prefix) == (
                "broker.example", MQTT_PASSWORD, "site-a")  # fmt: skip
            assert stored.client_key.strip() == key.strip()
            # shown again: the password and the key masked; sent back so, they are kept
            page = (await http.get("/integrations")).text
            assert MQTT_PASSWORD not in page and "PRIVATE KEY" not in page
            mqtt = form_values(page, "/integrations/mqtt")
            assert mqtt["password"] == mqtt["client_key"] == SECRET_MASK
            assert "BEGIN CERTIFICATE" in mqtt["client_certificate"]
            again = await http.post("/integrations/mqtt", data=mqtt | {"retain": ""})
            assert again.status_code == 303, problems(again.text)
            stored = gateway.settings.mqtt
            assert not stored.retain and stored.password == MQTT_PASSWORD
            assert stored.client_key.strip() == key.strip()

            # SNMP: not a number, then out of range, then stored
            snmp = await shown_form(http, "/integrations/snmp")
            bad = await http.post("/integrations/snmp", data=snmp | {"port": "one"})
            assert problems(bad.text) == {"port": "must be a whole number"}
            bad = await http.post("/integrations/snmp", data=snmp | {"port": "70000"})
            assert problems(bad.text) == {"port": "must be between 0 and 65535"}
            # the other forms are shown as stored meanwhile
            assert form_values(bad.text, "/integrations/mqtt")["topic_prefix"] == "site-a"
            agent = snmp | {"host": "127.0.0.1", "port": "0", "community": COMMUNITY}
            assert (await http.post("/integrations/snmp", data=agent)).status_code == 303
            assert (gateway.settings.snmp.host, gateway.settings.snmp.community) == (
                "127.0.0.1", COMMUNITY)  # fmt: skip
            assert COMMUNITY not in (await http.get("/integrations")).text

            # metrics: a scraper's own token
            metrics = await shown_form(http, "/integrations/metrics")
            assert metrics["enabled"] == "on" and "meter_values" not in metrics
            posted = await http.post("/integrations/metrics", data=metrics | {"token": TOKEN})
            assert posted.status_code == 303, problems(posted.text)
            scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert scraped.status_code == 200 and "mbusgw_" in scraped.text
            assert TOKEN not in (await http.get("/integrations")).text

            # without the CSRF token, or an unknown section: refused
            del agent["csrf_token"]
            assert (await http.post("/integrations/snmp", data=agent)).status_code == 403
            nosuch = await http.post("/integrations/modbus", data={"csrf_token": token})
            assert nosuch.status_code == 404
            # the settings API reads the same
            api = (await http.get("/api/v1/settings", auth=SERVED_ADMIN)).json()
            assert api["mqtt"]["topic_prefix"] == "site-a" and api["snmp"]["port"] == 0
            assert api["mqtt"]["client_key"] == SECRET_MASK


async def test_snmp_receivers_are_added_edited_refused_and_deleted(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with served_gateway(tmp_path, LINE) as (gateway, http):
            token = await sign_in_over_http(http, *SERVED_ADMIN)
            assert "No notification receivers" in (await http.get("/integrations")).text
            new = await shown_form(http, "", "/integrations/snmp/receivers/new")
            assert new["port"] == "162" and new["community"] == SECRET_MASK
            receiver = new | {"name": "nms", "host": "127.0.0.1", "port": "1162",
                              "inform": "on", "community": TRAP_COMMUNITY}  # fmt: skip
            url = "/integrations/snmp/receivers/new"
            bad_name = await http.post(url, data=receiver | {"name": "n m s"})
            assert set(problems(bad_name.text)) == {"name", "community"}
            no_host = await http.post(url, data=receiver | {"host": ""})
            assert problems(no_host.text)["host"] == "a receiver needs a host"
            assert TRAP_COMMUNITY not in no_host.text
            assert gateway.settings.snmp.receivers == {}
            added = await http.post(url, data=receiver)
            assert added.status_code == 303, problems(added.text)
            stored = gateway.settings.snmp.receivers["nms"]
            assert (stored.port, stored.inform, stored.community) == (1162, True, TRAP_COMMUNITY)
            taken = await http.post(url, data=receiver)
            assert problems(taken.text)["name"] == (
                "a notification receiver of that name exists already"
            )

            listing = (await http.get("/integrations")).text
            assert 'data-receiver="nms"' in listing and "127.0.0.1:1162" in listing
            edit = (await http.get("/integrations/snmp/receiver/nms")).text
            assert TRAP_COMMUNITY not in edit
            shown = form_values(edit, "")
            assert shown["community"] == SECRET_MASK and shown["inform"] == "on"
            many = await http.post(
                "/integrations/snmp/receiver/nms", data=shown | {"retries": "11"}
            )
            assert problems(many.text) == {"retries": "must be between 0 and 10"}
            saved = await http.post(
                "/integrations/snmp/receiver/nms", data=shown | {"timeout_s": "9"}
            )
            assert saved.status_code == 303, problems(saved.text)
            stored = gateway.settings.snmp.receivers["nms"]
            assert (stored.timeout_s, stored.retries, stored.community) == (9, 2, TRAP_COMMUNITY)

            # a read-only user sees the forms but changes nothing
            viewer_account = {"name": "viewer", "password": "Viewer123", "role": "read-only"}
            await http.post("/api/v1/users", auth=SERVED_ADMIN, json=viewer_account)
            async with httpx.AsyncClient(base_url=http.base_url) as viewer:
                viewer_token = await sign_in_over_http(viewer, "viewer", "Viewer123")
                seen = (await viewer.get("/integrations")).text
                assert 'action="/integrations/mqtt"' in seen and ">Save</button>" not in seen
                assert (await viewer.get("/integrations/snmp/receiver/nms")).status_code == 200
                for posted in ("/integrations/mqtt", "/integrations/snmp/receiver/nms",
                               "/integrations/snmp/receiver/nms/delete",
                               "/integrations/snmp/receivers/new"):  # fmt: skip
                    answer = await viewer.post(posted, data={"csrf_token": viewer_token})
                    assert answer.status_code == 403, posted

            deleted = await http.post("/integrations/snmp/receiver/nms/delete",
                                      data={"csrf_token": token})  # fmt: skip
            assert deleted.status_code == 303 and gateway.settings.snmp.receivers == {}
            gone = await http.post("/integrations/snmp/receiver/nms/delete",
                                   data={"csrf_token": token})  # fmt: skip
            assert gone.status_code == 404
