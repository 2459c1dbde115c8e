"""The DLMS/COSEM server end to end: a real gateway (simulated line at 9600 baud, the real
store) with the server on loopback, read by Gurux's client (an independent implementation,
test-only) over a real socket; every object is compared with what the REST API says."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from gurux_dlms import GXDLMSException
from gurux_dlms.enums import ErrorCode, Unit
from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSRegister
from webclient import Client, body, complete_first_login

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.services.dlms.service import DlmsService, dlms_service
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.web.app import create_app

sys.path.append(str(Path(__file__).parents[1] / "gateway"))
from gatewaykit import kept, seed_settings  # noqa: E402

PASSWORD = "lls-pass1"
LLS = 17  # the client SAP of the low-level-security association
DLMS = {"enabled": True, "host": "127.0.0.1", "port": 0, "lls_password": PASSWORD}
QUIET = {
    "modbus": {"enabled": False},
    "reading": {"schedule": "0 0 1 1 *", "read_at_start": False},
}
# The REST API's unit symbols and the Blue Book unit each must come out as (Gurux's names)
UNITS = {
    "": Unit.NO_UNIT,
    "m³": Unit.VOLUME_CUBIC_METER,
    "m³/h": Unit.VOLUME_FLUX_HOUR,
    "°C": Unit.TEMPERATURE,
    "s": Unit.SECOND,
    "Wh": Unit.ACTIVE_ENERGY,
    "W": Unit.ACTIVE_POWER,
    "%RH": Unit.OTHER_UNIT,  # a plain-text unit has no code of its own
}
# EN 13757-3 device types and the medium's own OBIS code of its main register (A-b:C.D.0)
MEDIUM_CODES = {6: "9.{b}.1.0.0.255", 7: "8.{b}.1.0.0.255", 4: "6.{b}.1.0.0.255"}


def connect(
    port: int, client_sap: int = 16, password: str | None = None, max_pdu: int | None = None
) -> Any:
    """Gurux's client (``bench/dlms_client.py``), imported here: the bounds-checked run
    collects this file from tests/, where the checkout's bench package is not importable."""
    from bench.dlms_client import DlmsClient

    return DlmsClient(port, client_sap, password, max_pdu)


class DlmsGateway(Gateway):
    def port(self) -> int:
        service = self.running_northbound["dlms"]
        assert isinstance(service, DlmsService) and service.address is not None
        return service.address[1]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[DlmsGateway]:
    seed_settings(tmp_path, {**QUIET, "dlms": DLMS})
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=2),)
    made: list[DlmsService] = []
    gateway = DlmsGateway(
        StartupConfig(tmp_path, interfaces=interfaces), northbound=[kept(made, dlms_service)]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        with trio.fail_after(60):
            await gateway.read_all()
            while any(made[0].source.values(m).read_at is None for m in gateway.meters):
                await trio.sleep(0.05)  # the server's source takes the stored readings
        yield gateway
        gateway.stop()


async def rest(gateway: Gateway, *paths: str) -> list[Any]:
    app = create_app(gateway)
    async with app.test_app():
        client = Client(app, None)
        await complete_first_login(client)
        return [body(await client.get(f"/api/v1/{path}")) for path in paths]


def error_of(call: Any) -> int:
    """The data-access-result (or AARE diagnostic) Gurux raised for ``call``."""
    with pytest.raises(GXDLMSException) as caught:
        call()
    return int(caught.value.errorCode)


def expected_registers(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A meter's numbers from the REST API in the server's order: the main register (the
    current total energy, else volume) first, then the others in record order."""
    numbers = [
        v for v in sorted(values, key=lambda v: v["series"]) if not isinstance(v["value"], str)
    ]
    for quantity in ("energy", "volume"):
        main = [v for v in numbers if v["quantity"] == quantity and v["description"] == ""]
        if main:
            return [main[0]] + [v for v in numbers if v is not main[0]]
    return numbers


def read_everything(port: int, meters: list[dict[str, Any]]) -> dict[str, Any]:
    """Each meter's registers and identification, then the gateway's objects, over one
    association of the public client."""
    client = connect(port)
    try:
        client.associate()
        found: dict[str, Any] = {"meters": []}
        for b, meter in enumerate(meters, 1):
            registers = []
            for e in range(1, len(meter["expected"]) + 1):
                register = client.register(f"0.{b}.24.2.{e}.255")
                registers.append((register.value, register.unit))
            beyond = f"0.{b}.24.2.{len(meter['expected']) + 1}.255"
            code = MEDIUM_CODES.get(meter["medium"])
            medium = client.register(code.format(b=b)).value if code else None
            found["meters"].append(
                {
                    "registers": registers,
                    "beyond": error_of(lambda at=beyond: client.register(at)),
                    "id": client.data(f"0.{b}.96.1.0.255"),
                    "medium": medium,
                }
            )
        found["clock"] = client.clock()
        found["name"] = client.data("0.0.42.0.0.255")
        found["device_id"] = client.data("0.0.96.1.0.255")
        found["firmware"] = client.data("0.0.0.2.0.255")
        found["no_meter"] = error_of(lambda: client.register(f"0.{len(meters) + 1}.24.2.1.255"))
        found["unknown"] = error_of(lambda: client.register("1.0.99.99.0.255"))
        found["wrong_class"] = error_of(lambda: client.read(GXDLMSData("0.1.24.2.1.255"), 2))
        found["no_attribute"] = error_of(lambda: client.read(GXDLMSRegister("0.1.24.2.1.255"), 4))
        found["denied"] = error_of(lambda: client.read(GXDLMSClock("0.0.1.0.0.255"), 5))
        found["name_attribute"] = client.read(GXDLMSRegister("0.1.24.2.1.255"), 1)
        client.release()
        return found
    finally:
        client.close()


async def test_every_mapped_object_equals_the_rest_value_and_unit(running: DlmsGateway) -> None:
    gateway = running
    latest, meter_list, device = await rest(gateway, "values/latest", "meters", "device")
    by_key = {m["key"]: m for m in meter_list["meters"]}
    meters = [
        {
            "expected": expected_registers(m["values"]),
            "medium": by_key[m["key"]]["medium"],
            "address": by_key[m["key"]]["secondary_address"],
        }
        for m in latest["meters"]
    ]
    assert all(m["expected"] for m in meters) and any(m["medium"] in MEDIUM_CODES for m in meters)
    with trio.fail_after(60):
        found = await trio.to_thread.run_sync(read_everything, gateway.port(), meters)

    for meter, got in zip(meters, found["meters"], strict=True):
        assert len(got["registers"]) == len(meter["expected"])
        for (value, unit), want in zip(got["registers"], meter["expected"], strict=True):
            assert value == pytest.approx(want["value"], rel=1e-12), want
            assert unit == UNITS[want["unit"]], want
        assert got["beyond"] == ErrorCode.UNDEFINED_OBJECT
        assert got["id"] == meter["address"]
        if meter["medium"] in MEDIUM_CODES:
            assert got["medium"] == got["registers"][0][0]  # an alias of the main register
    assert found["name"] == device["name"].encode() and found["device_id"] == device["name"]
    assert found["firmware"] == device["version"]
    clock = found["clock"].value
    assert abs((clock - datetime.fromisoformat(device["now"])).total_seconds()) < 60
    assert found["no_meter"] == found["unknown"] == ErrorCode.UNDEFINED_OBJECT
    assert found["wrong_class"] == ErrorCode.INCONSISTENT_CLASS
    assert found["no_attribute"] == ErrorCode.UNDEFINED_OBJECT
    assert found["denied"] == ErrorCode.READ_WRITE_DENIED
    assert found["name_attribute"] == "0.1.24.2.1.255"


def associate(port: int, client_sap: int, password: str | None) -> tuple[int, int] | None:
    """The AARE's result and diagnostic of a refusal (None: associated, and a read works)."""
    client = connect(port, client_sap, password)
    try:
        client.associate()
        client.register("0.1.24.2.1.255")
        client.release()
        return None
    except GXDLMSException as exc:
        return int(exc.result), int(exc.diagnostic)
    finally:
        client.close()


PERMANENT, TRANSIENT = 1, 2  # association results
NO_REASON, AUTHENTICATION_FAILURE, AUTHENTICATION_REQUIRED = 1, 13, 14


async def test_low_level_security_wants_the_right_password_and_says_why_not(
    running: DlmsGateway,
) -> None:
    gateway = running
    port = gateway.port()
    with trio.fail_after(60):
        wrong = await trio.to_thread.run_sync(associate, port, LLS, "lls-pass2")
        none = await trio.to_thread.run_sync(associate, port, LLS, None)
        right = await trio.to_thread.run_sync(associate, port, LLS, PASSWORD)
        stranger = await trio.to_thread.run_sync(associate, port, 40, None)
        # four more wrong guesses from this address make five: the right one waits too
        for _ in range(4):
            await trio.to_thread.run_sync(associate, port, LLS, "guess")
        locked = await trio.to_thread.run_sync(associate, port, LLS, PASSWORD)
        await gateway.update_settings({"dlms": {"public_client": False}})
        public_off = await trio.to_thread.run_sync(associate, port, 16, None)
    assert wrong == (PERMANENT, AUTHENTICATION_FAILURE)
    assert none == (PERMANENT, AUTHENTICATION_REQUIRED)
    assert right is None
    assert stranger == public_off == (PERMANENT, NO_REASON)
    assert locked == (TRANSIENT, NO_REASON)

    (status, settings) = await rest(gateway, "dlms/status", "settings")
    assert status["associations"] == 1 and status["associations_refused"] == 9
    assert status["last_refusal"] == "client 16: the public client is switched off"
    assert settings["dlms"]["lls_password"] == "********"
    assert gateway.writer is not None and gateway.store is not None
    await gateway.writer.flush()
    texts = [e.text for e in gateway.store.system_log(limit=1000) if e.origin == "dlms"]
    assert any("client 17: wrong password" in text for text in texts)
    assert any("client 17: too many wrong passwords" in text for text in texts)
    assert not any(PASSWORD in text or "lls-pass2" in text for text in texts)


def raw_exchange(port: int, frames: list[bytes]) -> list[bytes]:
    """Each frame's answer on one connection; b"" once the server closed it (or reset it:
    data it did not read is still in its socket then)."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for frame in frames:
            try:
                sock.sendall(frame)
                answers.append(sock.recv(4096))
            except ConnectionResetError:
                answers.append(b"")
    return answers


def wrapped(apdu: bytes, source: int = 16, destination: int = 1, version: int = 1) -> bytes:
    return (
        version.to_bytes(2, "big")
        + source.to_bytes(2, "big")
        + destination.to_bytes(2, "big")
        + len(apdu).to_bytes(2, "big")
        + apdu
    )


GET_CLOCK_TIME = bytes.fromhex("c001c1 0008 0000010000ff 02 00")  # invoke 1, class, LN, attr
SET_CLOCK_TIME = bytes.fromhex("c101c1 0008 0000010000ff 02 00 090c") + bytes(12)


async def test_garbage_closes_and_the_limits_hold(running: DlmsGateway) -> None:
    gateway = running
    port = gateway.port()
    with trio.fail_after(60):
        # a GET before an association, and a SET (never negotiated): exception responses
        # (state error, service error); then bytes that are no wrapper close the connection
        early, set_request, garbage = await trio.to_thread.run_sync(
            raw_exchange,
            port,
            [wrapped(GET_CLOCK_TIME), wrapped(SET_CLOCK_TIME), b"GET / HTTP/1.0\r\n\r\n"],
        )
        assert early == wrapped(bytes.fromhex("d80101"), source=1, destination=16)
        assert set_request == wrapped(bytes.fromhex("d80102"), source=1, destination=16)
        assert garbage == b""
        other_device = await trio.to_thread.run_sync(
            raw_exchange, port, [wrapped(GET_CLOCK_TIME, destination=5)]
        )
        assert other_device == [b""]
        unknown_apdu = await trio.to_thread.run_sync(raw_exchange, port, [wrapped(b"\x77\x00")])
        assert unknown_apdu == [b""]

        await gateway.update_settings({"dlms": {"max_connections": 1, "idle_timeout_s": 1}})
        with socket.create_connection(("127.0.0.1", port)) as first:
            while gateway.running_northbound["dlms"].counters.connections < 1:  # type: ignore[attr-defined]
                await trio.sleep(0.01)
            second = await trio.to_thread.run_sync(raw_exchange, port, [wrapped(GET_CLOCK_TIME)])
            assert second == [b""]  # turned away at once
            first.sendall(wrapped(GET_CLOCK_TIME)[:5])  # bytes, but no whole request: idle
            first.settimeout(30)
            assert await trio.to_thread.run_sync(first.recv, 16) == b""  # closed

    status = gateway.running_northbound["dlms"].status()  # type: ignore[attr-defined]
    assert status["closed_garbage"] == 3 and status["refused"] == 1 and status["closed_idle"] == 1


async def test_the_integrations_page_shows_the_server(running: DlmsGateway) -> None:
    gateway = running
    app = create_app(gateway)
    async with app.test_app():
        client = Client(app, None)
        await complete_first_login(client)
        page = (await (await client.get("/integrations")).get_data()).decode()
    assert "DLMS/COSEM server" in page and f"127.0.0.1:{gateway.port()}" in page


def objects_and_reads(port: int) -> tuple[list[tuple[int, str]], list[Any]]:
    """The object list over a small PDU size (so in blocks), then every listed Register's
    value read with the same client."""
    client = connect(port, max_pdu=256)
    try:
        client.associate()
        listed = client.objects()
        values = [client.read(o, 2) for o in listed if isinstance(o, GXDLMSRegister)]
        return [(int(o.objectType), o.logicalName) for o in listed], values
    finally:
        client.close()


async def test_the_object_list_names_every_object_and_comes_in_blocks(
    running: DlmsGateway,
) -> None:
    gateway = running
    (latest,) = await rest(gateway, "values/latest")
    with trio.fail_after(60):
        listed, values = await trio.to_thread.run_sync(objects_and_reads, gateway.port())
    expected = {(15, "0.0.40.0.0.255"), (8, "0.0.1.0.0.255")}
    expected |= {(1, name) for name in ("0.0.42.0.0.255", "0.0.96.1.0.255", "0.0.0.2.0.255")}
    for b, meter in enumerate(latest["meters"], 1):
        count = len(expected_registers(meter["values"]))
        expected |= {(3, f"0.{b}.24.2.{e}.255") for e in range(1, count + 1)}
        expected.add((1, f"0.{b}.96.1.0.255"))
    medium = {(kind, name) for kind, name in listed if not name.startswith("0.")}
    assert set(listed) == expected | medium and len(listed) == len(set(listed))
    assert {name for _, name in medium} == {"9.1.1.0.0.255"}  # meter 1: warm water
    assert len(values) == sum(kind == 3 for kind, _ in listed)
    assert all(value is not None for value in values)
    status = gateway.running_northbound["dlms"].status()  # type: ignore[attr-defined]
    assert status["errors"] == 0
