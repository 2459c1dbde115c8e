"""Licence files on a real gateway through the API: none needed; a good file shows its grants
and caps the capacity; a changed file, one signed by another key and one for another device
are refused with a message that says which, and change nothing."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from webclient import Client, body, complete_first_login

from mbusgw.gateway.app import Gateway
from mbusgw.gateway.licence import KEY_FILE, LicenceFiles, canonical
from mbusgw.gateway.settings import InterfaceConfig, StartupConfig
from mbusgw.web.app import create_app

sys.path.append(str(Path(__file__).parents[1] / "gateway"))
from gatewaykit import seed_settings  # noqa: E402

QUIET = {"modbus": {"enabled": False}, "reading": {"schedule": "0 0 1 1 *", "read_at_start": False}}


def signed(key: Ed25519PrivateKey, licence: dict[str, Any]) -> bytes:
    signature = base64.b64encode(key.sign(canonical(licence))).decode()
    return json.dumps({"licence": licence, "signature": signature}).encode()


def grant(device: str, capacity: int = 8) -> dict[str, Any]:
    return {
        "device": device,
        "licensee": "Plant 7 Ltd",
        "capacity": capacity,
        "features": ["terminal", "autoconfig"],
        "issued": "2026-12-01",
    }


async def test_licence_files_are_optional_verified_and_for_this_device(tmp_path: Path) -> None:
    seed_settings(tmp_path, QUIET)
    interfaces = (InterfaceConfig(name="a", kind="simulator", baud=9600, meters=2),)
    vendor, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gateway = Gateway(StartupConfig(tmp_path, interfaces=interfaces), northbound=[])
            await nursery.start(gateway.run)
            assert gateway.licence is not None
            device = gateway.licence.device
            app = create_app(gateway)
            async with app.test_app():
                api = Client(app, None)
                await complete_first_login(api)
                shown = body(await api.get("/api/v1/licence"))
                assert shown == {
                    "device": device,
                    "licence": None,
                    "problem": None,
                    "capacity": 512,
                }

                good = signed(vendor, grant(device))
                refused = await api.post("/api/v1/licence", data=good)
                assert refused.status_code == 400
                assert "no licence key is installed" in body(refused)["error"]["message"]

                public = vendor.public_key().public_bytes(
                    Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
                )
                (tmp_path / KEY_FILE).write_bytes(public)
                tampered = json.loads(good)
                tampered["licence"]["capacity"] = 512
                cases = {
                    "the signature is not valid": json.dumps(tampered).encode(),
                    "the signature is not valid:": signed(stranger, grant(device)),
                    f"the licence is for device 0011223344556677, this is device {device}": (
                        signed(vendor, grant("0011223344556677"))
                    ),
                    "not a licence file": b"capacity = 512",
                }
                for message, data in cases.items():
                    response = await api.post("/api/v1/licence", data=data)
                    assert response.status_code == 400, message
                    error = body(response)["error"]
                    assert error["code"] == "invalid_licence" and message in error["message"]
                assert body(await api.get("/api/v1/licence"))["licence"] is None
                assert gateway.settings.capacity == 512

                shown = body(await api.post("/api/v1/licence", data=good))
                assert shown["licence"] == {**grant(device), "capacity": 8}
                assert shown["capacity"] == 8 and gateway.settings.capacity == 8
                too_many = await api.patch("/api/v1/settings", json={"capacity": 32})
                assert too_many.status_code == 400
                assert body(too_many)["error"]["details"] == {
                    "capacity": "the licence allows at most 8 meters"
                }
                page = await api.get("/licence")
                assert page.status_code == 200 and b"Plant 7 Ltd" in page.body_bytes
            gateway.stop()
    # kept across a restart, and void (said why) once the key no longer signs it
    files = LicenceFiles(tmp_path)
    assert files.load() is not None and files.licence.capacity == 8  # type: ignore[union-attr]
    stranger_public = stranger.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / KEY_FILE).write_bytes(stranger_public)
    assert files.load() is None and "signature is not valid" in (files.problem or "")
