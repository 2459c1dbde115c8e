"""The licence file in the API (``/api/v1/licence``) and on a page: what it grants, upload
(docs/licence.md)."""

from __future__ import annotations

from typing import Any

from quart import Response, request

from mbusgw.web.auth import admin_only
from mbusgw.web.errors import Conflict
from mbusgw.web.pages import attempt, back, blueprint, page
from mbusgw.web.params import uploaded_file
from mbusgw.web.routes import gw, reply, route


def status() -> dict[str, Any]:
    files = gw().licence
    if files is None:
        raise Conflict("the gateway is not running")
    return files.status(gw().settings.capacity)


@route("GET", "/licence", "The licence: this device's id, what the licence grants",
       "device", response="LicenceStatus")  # fmt: skip
async def licence_status() -> Response:
    return reply(status())


@route("POST", "/licence", "Install a licence file (checked first; a bad one changes nothing)",
       "device", access="admin", body="file", response="LicenceStatus")  # fmt: skip
async def licence_install() -> Response:
    data, _ = await uploaded_file()
    await gw().install_licence(data)
    return reply(status())


@blueprint.get("/licence")
async def licence() -> str:
    return await page("licence.html", status=status())


@blueprint.post("/licence")
@admin_only
async def licence_upload() -> Response:
    files = await request.files
    upload = files.get("file")
    data = upload.read() if upload is not None else b""
    _, error = await attempt(lambda: gw().install_licence(data))
    if error is not None:
        return back("pages.licence", f"Licence refused: {error.message}")
    return back("pages.licence", "Licence installed")
