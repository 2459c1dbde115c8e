"""HTTP and HTTPS reports: the file is POSTed with httpx (on trio), streamed from its spool.

The receiver accepted the report when it answers 2xx; redirects are not followed (a receiver
that moved is a configuration to fix, not something to guess).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable

from mbusgw.gateway.errors import DeliveryError
from mbusgw.gateway.report_settings import HttpReceiver
from mbusgw.gateway.services.reports.delivery import explain, within
from mbusgw.gateway.services.reports.templates import Rendered

BLOCK = 64 * 1024


class HttpDelivery:
    protocol = "http"

    def __init__(
        self, receiver: HttpReceiver, timeout: float | None, context: Callable[[], ssl.SSLContext]
    ) -> None:
        self.receiver = receiver
        self.timeout = timeout
        self.context = context
        self.target = receiver.uri

    async def deliver(self, rendered: Rendered) -> str:
        return await within(self.timeout, f"HTTP to {self.target}", lambda: self._post(rendered))

    async def _post(self, rendered: Rendered) -> str:
        import httpx  # imported when needed: a gateway without HTTP reports never loads it

        r = self.receiver
        auth = httpx.BasicAuth(r.username, r.password) if r.auth == "basic" else None
        headers = {
            "Content-Type": rendered.content_type,
            "Content-Length": str(rendered.size),
            "Content-Disposition": f'attachment; filename="{rendered.filename}"',
        }
        # plain http:// makes no TLS connection (redirects are not followed): no context needed
        verify = self.context() if r.uri.lower().startswith("https:") else False
        try:
            async with httpx.AsyncClient(
                verify=verify, timeout=httpx.Timeout(self.timeout), follow_redirects=False
            ) as client:
                response = await client.post(
                    r.uri, content=_chunks(rendered), headers=headers, auth=auth
                )
        except httpx.HTTPError as error:
            raise DeliveryError(f"HTTP to {self.target}: {explain(error)}") from None
        code = response.status_code
        status = f"{code} {response.reason_phrase or httpx.codes.get_reason_phrase(code)}"
        if not 200 <= code < 300:
            text = response.text[:200].strip()
            raise DeliveryError(f"HTTP to {self.target}: {status}" + (f": {text}" if text else ""))
        return status


async def _chunks(rendered: Rendered) -> AsyncIterator[bytes]:
    """The spooled file in blocks (small local reads; the network wait is what is async)."""
    rendered.file.seek(0)
    while block := rendered.file.read(BLOCK):
        yield block
