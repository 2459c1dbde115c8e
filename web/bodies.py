"""Answer a request only once its body has arrived.

A response that is complete while the client is still sending the request body (a 401, 403,
405 or a refused upload, decided from the headers alone) leaves hypercorn's HTTP/1.1
connection unusable: it cannot start the next request/response cycle, and the close it
attempts instead is cancelled half-way when the app's task ends. The client's next request on
that keep-alive connection is then never answered. ``BodyBeforeResponse`` holds the start of
every response until the request's body is complete, so each connection is reused cleanly.
A body that does not arrive within the body timeout, or one too large to be read at all (more
than the app accepts), is not waited for: that response says ``Connection: close``, so the
client opens a new connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

TOO_LARGE = 413


class BodyBeforeResponse:
    """ASGI middleware around the app served by hypercorn (see the module's docstring)."""

    def __init__(self, app: AsgiApp, timeout_s: float, max_bytes: int) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    def _readable(self, scope: dict[str, Any], status: int) -> bool:
        """Whether the body is worth waiting for: not refused as too large, and not announced
        larger than the app accepts (a chunked body is waited for up to the timeout)."""
        if status == TOO_LARGE:
            return False
        for name, value in scope["headers"]:
            if name.lower() == b"content-length":
                return value.isdigit() and int(value) <= self.max_bytes
        return True

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_received = trio.Event()

        async def receive_watched() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_received.set()
            return message

        async def send_after_body(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_received.is_set():
                if self._readable(scope, message["status"]):
                    with trio.move_on_after(self.timeout_s):
                        await body_received.wait()
                if not body_received.is_set():
                    headers = [*message.get("headers", ()), (b"connection", b"close")]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive_watched, send_after_body)
