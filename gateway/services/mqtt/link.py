"""The broker connection: paho-mqtt's client on a thread of its own, told to the trio side.

paho-mqtt is the Eclipse reference client (MQTT 3.1.1 and 5, TLS, last will, QoS 1 with
acknowledgements); its callbacks run on its network thread and are handed to trio with
``TrioToken.run_sync_soon``. (aiomqtt wraps the same client for asyncio only.) The thread here
connects and reconnects itself, so that a refused connection is reported with its reason
(wrong password, certificate not trusted, broker away)."""

from __future__ import annotations

import contextlib
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import trio
from paho.mqtt.enums import CallbackAPIVersion

from mbusgw.gateway.mqtt_settings import MqttSettings

KEEPALIVE_S = 30
MAX_RECONNECT_S = 30.0
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
    """One connection's lifetime: ``start()`` runs the thread, ``stop()`` says goodbye
    (availability ``offline``) and joins it. ``on_state(connected, error)`` and
    ``on_ack(mid)`` are called in trio."""

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
        self._token = trio.lowlevel.current_trio_token()
        self._on_state = on_state
        self._on_ack = on_ack
        self._stop = threading.Event()
        self._acks: list[int] = []  # acknowledged ids not yet told to trio
        self._acks_lock = threading.Lock()
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
        self.client = client
        self._thread = threading.Thread(target=self._network, name="mqtt", daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self.client.is_connected():
            info = self.client.publish(self.availability, OFFLINE, qos=1, retain=True)
            # the connection may end meanwhile: the last will says "offline" then
            with contextlib.suppress(RuntimeError, ValueError):
                await trio.to_thread.run_sync(info.wait_for_publish, 2.0)
        self.client.disconnect()
        await trio.to_thread.run_sync(self._thread.join, 5.0)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """The message's id (its acknowledgement comes to ``on_ack``); -1 when not connected."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.mid if info.rc == paho.MQTT_ERR_SUCCESS else -1

    def _tell(self, fn: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the gateway has stopped
            self._token.run_sync_soon(fn, *args)

    def _network(self) -> None:
        # paho writes a publication from the publishing thread unless its network loop runs on
        # a thread it knows of (as loop_start's): this one is that thread, so every write
        # happens here and publish() from trio only queues
        self.client._thread = threading.current_thread()
        delay = 1.0
        while not self._stop.is_set():
            try:
                self.client.connect(self.settings.host, self.port, KEEPALIVE_S)
            except (OSError, ValueError) as exc:
                self._tell(self._on_state, False, f"cannot connect: {reason_of(exc)}")
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_S)
                continue
            self.client.loop_forever()  # returns when the connection ends
            if self._connected_once:  # it was up: try again soon
                delay, self._connected_once = 1.0, False
            self._stop.wait(delay)
            delay = min(delay * 2, MAX_RECONNECT_S)

    _connected_once = False

    def _connected(self, client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
        if reason.is_failure:
            self._tell(self._on_state, False, f"the broker refused the connection: {reason}")
            client.disconnect()
            return
        self._connected_once = True
        client.publish(self.availability, ONLINE, qos=1, retain=True)
        self._tell(self._on_state, True, None)

    def _disconnected(self, client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
        if not self._stop.is_set() and not reason.is_failure:
            return
        if not self._stop.is_set():
            self._tell(self._on_state, False, f"connection lost: {reason}")

    def _published(self, client, userdata, mid, reason, properties) -> None:  # noqa: ANN001
        # one wake-up of trio for the acknowledgements that arrive meanwhile, not one each
        with self._acks_lock:
            first = not self._acks
            self._acks.append(mid)
        if first:
            self._tell(self._tell_acks)

    def _tell_acks(self) -> None:
        with self._acks_lock:
            mids, self._acks = self._acks, []
        for mid in mids:
            self._on_ack(mid)


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the broker's certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no broker listening)"
    return str(exc) or type(exc).__name__
