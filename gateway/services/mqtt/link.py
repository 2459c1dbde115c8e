"""The broker connection: paho-mqtt's client, its socket driven by trio.

paho-mqtt is the Eclipse reference client (MQTT 3.1.1 and 5, TLS, last will, QoS 1 with
acknowledgements). (aiomqtt wraps the same client for asyncio only.) Its network thread is not
used: that thread handled each acknowledgement in Python and woke per publication, fighting the
publishing side for the interpreter. Instead paho's external-loop interface is driven from trio
(``loop_read`` when the socket is readable, ``loop_write`` when paho has queued packets,
``loop_misc`` for the keep-alive), so publications are queued and written in batches while the
acknowledgements are read in between, all on one thread, and ``on_ack`` runs directly. Only the
connection itself (name resolution, TCP and TLS handshakes, blocking in paho) runs on a worker
thread. The link connects and reconnects itself, so that a refused connection is reported with
its reason (wrong password, certificate not trusted, broker away)."""

from __future__ import annotations

import contextlib
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import trio
from paho.mqtt.enums import CallbackAPIVersion

from mbusgw.gateway.mqtt_settings import MqttSettings

KEEPALIVE_S = 30
MAX_RECONNECT_S = 30.0
MISC_EVERY_S = 1.0  # paho's keep-alive bookkeeping (pings, a broker that stopped answering)
GOODBYE_S = 2.0  # how long the "offline" availability message may take at the end
OFFLINE = b"offline"
ONLINE = b"online"


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if settings.ca_certificate:
        context = ssl.create_default_context(cadata=settings.ca_certificate)
    if settings.client_certificate:
        # the ssl module loads a certificate chain from files only: a private temporary folder
        with tempfile.TemporaryDirectory() as folder:
            chain = Path(folder) / "client.pem"
            chain.touch(mode=0o600)
            chain.write_text(settings.client_certificate + "\n" + settings.client_key)
            context.load_cert_chain(str(chain))
    return context


class BrokerLink:
    """One connection's lifetime: ``run()`` (a trio task) connects, reconnects and moves the
    bytes; ``stop()`` says goodbye (availability ``offline``) and ends it. ``on_state(connected,
    error)`` and ``on_ack(mid)`` are called in trio."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        availability: str,
        on_state: Callable[[bool, str | None], None],
        on_ack: Callable[[int], None],
    ) -> None:
        self.settings = settings
        self.availability = availability
        self.port = settings.port or (8883 if settings.tls else 1883)
        self._on_state = on_state
        self._on_ack = on_ack
        self._trio_thread = threading.get_ident()
        self._want_write = trio.Event()
        self._scope = trio.CancelScope()
        self._finished = trio.Event()
        self._goodbye_mid = -1
        self._goodbye = trio.Event()
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
        )
        if settings.username:
            client.username_pw_set(settings.username, settings.password or None)
        if settings.tls:
            client.tls_set_context(tls_context(settings))
        client.will_set(availability, OFFLINE, qos=1, retain=True)
        # no cap on messages awaiting their acknowledgement: paho keeps them all anyway (the
        # queue is unbounded too), and with a cap it walks the in-flight ones on every
        # acknowledgement to find the next to send, which made a cycle's 5,000 messages slow
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_publish = self._published
        # with these set, paho only queues what it has to send; the writer task writes it
        client.on_socket_register_write = self._register_write
        client.on_socket_close = self._socket_closing
        self.client = client

    # ---------------------------------------------------------------- lifetime

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            with self._scope:
                await self._connections()
        finally:
            self._finished.set()

    async def _connections(self) -> None:
        delay = 1.0
        while True:
            try:
                # blocking in paho: the name, the TCP and TLS handshakes (connect_timeout)
                await trio.to_thread.run_sync(
                    self.client.connect, self.settings.host, self.port, KEEPALIVE_S
                )
            except (OSError, ValueError) as exc:
                self._on_state(False, f"cannot connect: {reason_of(exc)}")
                await trio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_S)
                continue
            await self._connection()
            if self._up:  # closed without paho's on_disconnect: told all the same
                self._up = False
                self._on_state(False, "connection lost")
            if self._connected_once:  # it was up: try again soon
                delay, self._connected_once = 1.0, False
            await trio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_S)

    async def _connection(self) -> None:
        """Moves the bytes of one connection until it ends."""
        sock = self.client.socket()
        if sock is None:
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, sock)
            nursery.start_soon(self._keepalive)
            await self._reader(sock)
            nursery.cancel_scope.cancel()

    async def stop(self) -> None:
        self._scope.cancel()
        await self._finished.wait()  # no task of the link waits on the socket now
        sock = self.client.socket()
        if sock is not None and self.client.is_connected():
            info = self.client.publish(self.availability, OFFLINE, qos=1, retain=True)
            self._goodbye_mid = info.mid
            # the connection may end meanwhile: the last will says "offline" then
            with trio.move_on_after(GOODBYE_S), contextlib.suppress(trio.ClosedResourceError):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, sock)
                    nursery.start_soon(self._reader, sock)
                    await self._goodbye.wait()
                    nursery.cancel_scope.cancel()
        if self.client.socket() is not None:
            self.client.disconnect()  # queues DISCONNECT
            with trio.move_on_after(GOODBYE_S), contextlib.suppress(trio.ClosedResourceError):
                await self._flush(self.client.socket())
        sock = self.client.socket()
        if sock is not None:  # not written in time: closed all the same
            sock.close()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """The message's id (its acknowledgement comes to ``on_ack``); -1 when not connected.
        The message is queued; the writer task sends it at trio's next checkpoint."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.mid if info.rc == paho.MQTT_ERR_SUCCESS else -1

    # ---------------------------------------------------------------- the socket

    async def _reader(self, sock: Any) -> None:
        client = self.client
        while client.socket() is sock:
            try:
                await trio.lowlevel.wait_readable(sock)
            except trio.ClosedResourceError:
                return
            client.loop_read()  # every complete packet there is; on_ack for each PUBACK
            # TLS may hold decrypted bytes the kernel no longer shows as readable
            while client.socket() is sock and isinstance(sock, ssl.SSLSocket) and sock.pending():
                client.loop_read()

    async def _writer(self, sock: Any) -> None:
        # a flush first: what was queued while connecting (on the worker thread) is not told
        while self.client.socket() is sock:
            await self._flush(sock)
            await self._want_write.wait()
            self._want_write = trio.Event()

    async def _flush(self, sock: Any) -> None:
        client = self.client
        while client.socket() is sock and client.want_write():
            client.loop_write()  # as much as the socket takes
            if client.socket() is sock and client.want_write():
                await trio.lowlevel.wait_writable(sock)

    async def _keepalive(self) -> None:
        while True:
            await trio.sleep(MISC_EVERY_S)
            self.client.loop_misc()

    # ---------------------------------------------------------------- paho's callbacks

    def _register_write(self, client, userdata, sock) -> None:  # noqa: ANN001
        # also called from the connecting worker thread: the connection's writer starts with
        # a flush of what was queued then
        if threading.get_ident() == self._trio_thread:
            self._want_write.set()

    def _socket_closing(self, client, userdata, sock) -> None:  # noqa: ANN001
        # a task may wait on the socket: trio wakes it (ClosedResourceError) before the close
        if threading.get_ident() == self._trio_thread:
            trio.lowlevel.notify_closing(sock)

    _connected_once = False
    _up = False  # connected, as told to on_state

    def _connected(self, client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
        if reason.is_failure:
            self._on_state(False, f"the broker refused the connection: {reason}")
            client.disconnect()
            return
        self._connected_once = self._up = True
        client.publish(self.availability, ONLINE, qos=1, retain=True)
        self._on_state(True, None)

    def _disconnected(self, client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
        self._up = False
        if reason.is_failure and not self._scope.cancel_called:
            self._on_state(False, f"connection lost: {reason}")

    def _published(self, client, userdata, mid, reason, properties) -> None:  # noqa: ANN001
        if mid == self._goodbye_mid:
            self._goodbye.set()
        else:
            self._on_ack(mid)


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the broker's certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no broker listening)"
    return str(exc) or type(exc).__name__
