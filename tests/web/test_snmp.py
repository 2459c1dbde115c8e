"""The SNMP v2c agent with net-snmp's tools: smilint passes the MIB, snmpwalk/snmpget read and
name every object, snmptrapd gets the notifications of a failing and recovering meter and the
test notification (TRAP to one receiver, INFORM to another), the API serves the MIB."""

from __future__ import annotations

import subprocess
from pathlib import Path

import trio
from snmp_tools import mib_dirs, net_snmp, snmptrapd, tool
from webrig import SERVED_ADMIN, served_gateway

from mbusgw.gateway.services.snmp.objects import MIB_PATH
from mbusgw.gateway.settings import InterfaceConfig

COMMUNITY = "gw-read-1"


def test_the_mib_passes_smilint_at_its_strictest() -> None:
    done = subprocess.run(
        [tool("smilint"), "-s", "-l", "6", str(MIB_PATH)],
        capture_output=True,
        text=True,
        env={"SMIPATH": mib_dirs()},
    )
    assert done.returncode == 0 and not done.stdout and not done.stderr, done.stdout + done.stderr


async def agent_port(gateway) -> int:
    while gateway.snmp.address is None or gateway.snmp.address[1] == 161:
        await trio.sleep(0.02)
    return gateway.snmp.address[1]


async def test_walk_get_and_notifications_with_net_snmp(tmp_path: Path) -> None:
    line = InterfaceConfig(name="sim1", kind="simulator", baud=9600, meters=3)
    with trio.fail_after(90):
        async with (
            served_gateway(tmp_path, line) as (gateway, http),
            snmptrapd(tmp_path, "traps") as plain,
            snmptrapd(tmp_path, "informs") as acknowledging,
        ):
            await gateway.update_settings(
                {
                    "mbus": {"timing": {"read_retries": 0}},
                    "snmp": {
                        "enabled": True,
                        "host": "127.0.0.1",
                        "port": 0,
                        "community": COMMUNITY,
                        "receivers": {
                            "plain": {"host": "127.0.0.1", "port": plain.port,
                                      "community": "traps"},
                            "acknowledging": {"host": "127.0.0.1", "port": acknowledging.port,
                                              "community": "informs", "inform": True,
                                              "timeout_s": 2},
                        },
                    },
                }
            )  # fmt: skip
            port = await agent_port(gateway)
            target = f"127.0.0.1:{port}"
            simulated = gateway.simulators["sim1"].line.meters
            await gateway.read_all()
            simulated[1].silent = True
            await gateway.read_all()

            code, walked = await net_snmp("snmpwalk", "-v2c", "-c", COMMUNITY, target, "mbusgwMIB")
            assert code == 0, walked
            keys = [meter.key for meter in gateway.meters]
            for index, key in enumerate(keys, start=1):
                assert f"MBUSGW-MIB::mbusgwMeterId.{index} = STRING: {key}" in walked
                assert f"MBUSGW-MIB::mbusgwMeterPosition.{index} = STRING:" in walked
                assert f"MBUSGW-MIB::mbusgwMeterLastGood.{index} = STRING: 20" in walked
            assert "MBUSGW-MIB::mbusgwMeterStatus.1 = INTEGER: ok(1)" in walked
            assert "MBUSGW-MIB::mbusgwMeterStatus.2 = INTEGER: failed(3)" in walked
            for name in ("mbusgwDeviceName", "mbusgwDeviceUptime", "mbusgwDeviceVersion"):
                assert f"MBUSGW-MIB::{name}.0 = " in walked
            assert "MBUSGW-MIB::mbusgwMetersInstalled.0 = Gauge32: 3" in walked
            assert "MBUSGW-MIB::mbusgwMetersFailed.0 = Gauge32: 1" in walked
            assert "MBUSGW-MIB::mbusgwStatus.0 = INTEGER: warning(2)" in walked
            assert "Unknown Object" not in walked

            code, got = await net_snmp(
                "snmpget", "-v2c", "-c", COMMUNITY, target,
                "mbusgwStatus.0", "mbusgwMeterStatus.2", "mbusgwMeterId.3",
            )  # fmt: skip
            assert code == 0, got
            assert "mbusgwStatus.0 = INTEGER: warning(2)" in got
            assert f"mbusgwMeterId.3 = STRING: {keys[2]}" in got
            code, missing = await net_snmp("snmpget", "-v2c", "-c", COMMUNITY, target,
                                           "mbusgwMeterId.9")  # fmt: skip
            assert "No Such Instance" in missing
            code, refused = await net_snmp(
                "snmpget", "-v2c", "-c", "wrong", "-t", "0.3", "-r", "0", target, "mbusgwStatus.0"
            )
            assert code != 0 and "Timeout" in refused
            assert gateway.snmp.refused >= 1

            # the failure above: the meter's notification and the status change, at both
            for receiver in (plain, acknowledging):
                failed = await receiver.wait_for("MBUSGW-MIB::mbusgwMeterFailed")
                assert f"mbusgwMeterId.2 = STRING: {keys[1]}" in failed[0]
                assert "mbusgwMeterStatus.2 = INTEGER: failed(3)" in failed[0]
                changed = await receiver.wait_for("MBUSGW-MIB::mbusgwStatusChanged")
                assert "mbusgwStatus.0 = INTEGER: warning(2)" in changed[-1]
            simulated[1].silent = False
            await gateway.read_all()
            for receiver in (plain, acknowledging):
                await receiver.wait_for("MBUSGW-MIB::mbusgwMeterRecovered")
                changed = await receiver.wait_for("MBUSGW-MIB::mbusgwStatusChanged", 2)
                assert "mbusgwStatus.0 = INTEGER: ok(1)" in changed[-1]

            tested = await http.post("/api/v1/snmp/test-notification", auth=SERVED_ADMIN)
            assert tested.json() == {"receivers": {"plain": True, "acknowledging": True},
                                     "ok": True}  # fmt: skip
            for receiver in (plain, acknowledging):
                await receiver.wait_for("MBUSGW-MIB::mbusgwTestNotification")
            page = await http.get("/integrations", auth=SERVED_ADMIN)
            assert page.status_code == 200
            assert f"listening</span> on <code>127.0.0.1:{port}" in page.text
            assert "/api/v1/snmp/MBUSGW-MIB.txt" in page.text
            button = await http.post("/integrations", auth=SERVED_ADMIN)
            assert button.status_code == 303
            assert "acknowledging:+ok" in button.headers["location"]
            for receiver in (plain, acknowledging):
                await receiver.wait_for("MBUSGW-MIB::mbusgwTestNotification", 2)
            status = (await http.get("/api/v1/snmp/status", auth=SERVED_ADMIN)).json()
            assert status["receivers"]["acknowledging"]["acknowledged"] >= 4
            assert status["receivers"]["plain"]["failed"] == 0
            assert COMMUNITY not in str(await http.get("/api/v1/settings", auth=SERVED_ADMIN))

            mib = await http.get("/api/v1/snmp/MBUSGW-MIB.txt", auth=SERVED_ADMIN)
            assert mib.status_code == 200 and mib.text == MIB_PATH.read_text()
