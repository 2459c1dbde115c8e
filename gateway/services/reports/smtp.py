"""E-mail reports through the standard library's ``smtplib``, in a worker thread.

The report file is attached to a short text naming the device, the report and its window. The
server has accepted the report when its reply to the message data is 250: ``send_message``
returns only then. Recipients the server refuses while others are accepted are logged by the
caller (``refused``); they would refuse a retry too, so the report counts as delivered.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import trio

from mbusgw.gateway.errors import DeliveryError
from mbusgw.gateway.report_settings import EmailReceiver
from mbusgw.gateway.services.reports.delivery import explain, within
from mbusgw.gateway.services.reports.templates import Rendered

DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}


class SmtpDelivery:
    protocol = "email"

    def __init__(
        self,
        receiver: EmailReceiver,
        recipients: list[str],
        timeout: float | None,
        context: Callable[[], ssl.SSLContext],
    ) -> None:
        self.receiver = receiver
        self.recipients = recipients
        self.timeout = timeout
        self.context = context
        self.port = receiver.port or DEFAULT_PORTS[receiver.security]
        self.target = f"smtp://{receiver.host}:{self.port} to {', '.join(recipients)}"
        self.refused: dict[str, str] = {}

    async def deliver(self, rendered: Rendered) -> str:
        if not self.recipients:
            raise DeliveryError("e-mail report without recipients")
        message = self.message(rendered)
        return await within(
            self.timeout,
            f"e-mail via {self.receiver.host}:{self.port}",
            lambda: trio.to_thread.run_sync(self._send, message, abandon_on_cancel=True),
        )

    def message(self, rendered: Rendered) -> EmailMessage:
        r = self.receiver
        message = EmailMessage()
        message["From"] = r.sender or (r.username if "@" in r.username else "mbusgw@localhost")
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = rendered.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid("mbusgw")
        message.set_content(rendered.body)
        kind, _, rest = rendered.content_type.partition(";")
        maintype, _, subtype = kind.strip().partition("/")
        message.add_attachment(
            rendered.data(), maintype=maintype, subtype=subtype, filename=rendered.filename
        )
        return message

    def _send(self, message: EmailMessage) -> str:
        r = self.receiver
        timeout = self.timeout if self.timeout is not None else None
        try:
            if r.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    r.host, self.port, timeout=timeout, context=self.context()
                )
            else:
                client = smtplib.SMTP(r.host, self.port, timeout=timeout)
            with client:
                client.ehlo()
                if r.security == "starttls":
                    client.starttls(context=self.context())
                    client.ehlo()
                if r.username:
                    client.login(r.username, r.password)
                self.refused = {
                    address: f"{code} {reply.decode(errors='replace')}"
                    for address, (code, reply) in client.send_message(message).items()
                }
        except smtplib.SMTPRecipientsRefused as error:
            refused = "; ".join(
                f"{address}: {code} {reply.decode(errors='replace')}"
                for address, (code, reply) in error.recipients.items()
            )
            raise DeliveryError(f"e-mail refused for every recipient ({refused})") from None
        except smtplib.SMTPResponseException as error:
            text = error.smtp_error.decode(errors="replace")
            raise DeliveryError(
                f"e-mail via {r.host}:{self.port}: {error.smtp_code} {text}"
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"e-mail via {r.host}:{self.port}: {explain(error)}") from None
        accepted = len(self.recipients) - len(self.refused)
        return f"250 accepted for {accepted} recipient(s)"
