"""Web tests: the app in-process against a gateway of real parts in a temporary directory.
(Helpers live in ``webclient.py`` and ``webrig.py``: a test module imports them from there,
never from this file, whose module name another conftest can take.)

Rules (as in the gateway tests): every I/O test has a ``trio.fail_after``; nothing sleeps on
the real clock; servers listen only on 127.0.0.1.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# the report tests' receiving servers (tests/gateway/report_receivers.py) serve the web's too
sys.path.append(str(Path(__file__).parents[1] / "gateway"))

import pytest
import trio
from argon2 import PasswordHasher
from webclient import Client, body, complete_first_login
from webrig import OpenApiChecker, RigGateway, open_rig

from mbusgw.web.app import create_app


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 with small parameters: the same algorithm, quick enough for hundreds of logins."""
    import mbusgw.web.users as users

    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    original = users.UserDirectory.__init__

    def init(self: Any, table: Any, now: Any, *, hasher: Any = None) -> None:
        original(self, table, now, hasher=hasher or fast)

    monkeypatch.setattr(users.UserDirectory, "__init__", init)


@pytest.fixture
async def gateway(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[RigGateway]:
    rig = await open_rig(nursery, tmp_path)
    yield rig
    rig.writer.close()


@pytest.fixture
async def app(gateway: RigGateway) -> AsyncIterator[Any]:
    application = create_app(gateway)
    async with application.test_app():
        yield application


@pytest.fixture
async def checker(app: Any) -> OpenApiChecker:
    from mbusgw.web.api_v1 import ROUTES
    from mbusgw.web.openapi import build_document

    return OpenApiChecker(build_document(ROUTES))


@pytest.fixture
async def anonymous(app: Any, checker: OpenApiChecker) -> Client:
    return Client(app, checker)


@pytest.fixture
async def admin(app: Any, checker: OpenApiChecker) -> Client:
    client = Client(app, checker)
    await complete_first_login(client)
    token = body(await client.post("/api/v1/me/tokens", json={"label": "tests"}))["token"]
    client.use_token(token)
    return client
