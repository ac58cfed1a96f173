"""Where the daemon's broker clients and their subscription options are built from the settings.

Three connections, three kinds of client, each for what it carries:

- paho (:func:`paho_client`), its network loop in a thread of the daemon's,
  for the main connection (:class:`Connection`): what gunctl publishes, and
  other daemons' and Home Assistant's messages. paho reads one packet per
  call: on the event loop (as aiomqtt runs it), each message cost a trip round
  the loop and a write registration for its acknowledgement, 0.75 ms a
  message on a loaded machine, and the control loops waited behind it. So it
  reads in a thread and hands the event loop what it read in batches
  (:mod:`gunctl.mqtt.handoff`);
- gmqtt, in a process of its own (:mod:`gunctl.mqtt.screen`), for the ``set``
  topics, which anyone allowed to publish can flood: even in a thread, paho's
  time per message held the GIL the control loops need, and in a process of
  its own it still cost 86 to 127 µs a message against gmqtt's 35 to 38;
- aiomqtt for the stop line (:mod:`gunctl.mqtt.stopline`), which carries
  nothing but stops.

In the daemon, what arrives is handed on as an :class:`Incoming`, so the code
that reads commands does not depend on either library. Keeping the MQTT
libraries' types here (and in the modules that move messages) makes their next
upgrade a local change.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiomqtt
import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gunctl.config import MqttSettings, ServeSettings

if TYPE_CHECKING:
    from aiomqtt.types import PayloadType
    from pydantic import SecretStr

log = structlog.get_logger("gunctl.mqtt")

Subscription = tuple[str, int | SubscribeOptions]
TIMEOUT_S = 10.0  # to connect, and for the broker to answer a subscription
QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message from the broker, whichever connection it came in on."""

    topic: str
    payload: bytes
    retain: bool = False
    properties: Properties | None = None

    @classmethod
    def of(cls, message: aiomqtt.Message) -> Incoming:
        return cls(
            message.topic.value, payload_bytes(message.payload), message.retain, message.properties
        )


@dataclass(frozen=True)
class Will:
    """What the broker publishes for us if the connection dies."""

    topic: str
    payload: str
    qos: int = 1
    retain: bool = True


def payload_bytes(payload: PayloadType) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode()


def acknowledge_now(client: paho.Client) -> None:
    """Have the kernel acknowledge what the broker sent at once, not up to 40 ms later.

    Mosquitto sends with Nagle's algorithm (its default): while something it
    sent us is not acknowledged, its next small message waits. Our kernel
    delays its acknowledgements when we have nothing to send back, so the
    broker's next message to this connection (an acknowledgement of what
    gunctl published, another daemon's message) can wait 40 ms behind it;
    when this connection still read the ``set`` topics, a stop there waited
    so (bench/mqtt_stop.py: p99 43 ms with 16 guns; 5 ms with this). Called
    in the network thread with each message and acknowledgement.
    """
    sock = client.socket()
    if QUICKACK is not None and isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)


def paho_client(
    mqtt: MqttSettings,
    identifier: str,
    password: SecretStr | None,
    *,
    will: Will | None = None,
) -> paho.Client:
    """A paho client for the settings (its callbacks are the caller's to set; :func:`connect`).

    It does not connect again by itself after a loss: :class:`Connection` does, after
    its own back-off.
    """
    v5 = mqtt.protocol == "5"
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=identifier,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else True,
        reconnect_on_failure=False,
    )
    if mqtt.user is not None:
        secret = password.get_secret_value() if password is not None else None
        client.username_pw_set(mqtt.user, secret)
    if will is not None:
        client.will_set(will.topic, will.payload, will.qos, will.retain)
    client.connect_timeout = TIMEOUT_S
    return client


def connect(client: paho.Client, mqtt: MqttSettings) -> None:
    """Connect a :func:`paho_client`; it blocks (DNS, TCP, TLS and its CA file): not on a loop."""
    if mqtt.tls_ca is not None:
        client.tls_set(ca_certs=str(mqtt.tls_ca))
    client.connect(mqtt.host, mqtt.port, mqtt.keepalive_s)


def make_client(
    settings: ServeSettings,
    identifier: str,
    *,
    password: SecretStr | None,
) -> aiomqtt.Client:
    """An aiomqtt client for the stop line; ``password`` is read by the caller, off the loop."""
    mqtt = settings.mqtt
    tls = aiomqtt.TLSParameters(ca_certs=str(mqtt.tls_ca)) if mqtt.tls_ca else None
    protocol = aiomqtt.ProtocolVersion.V5 if mqtt.protocol == "5" else aiomqtt.ProtocolVersion.V311
    return aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        username=mqtt.user,
        password=password.get_secret_value() if password is not None else None,
        identifier=identifier,
        protocol=protocol,
        keepalive=mqtt.keepalive_s,
        tls_params=tls,
        timeout=TIMEOUT_S,
    )


def subscription(
    mqtt: MqttSettings, topic: str, *, commands: bool = False, others_only: bool = False
) -> Subscription:
    """A QoS 1 subscription to ``topic``.

    Under MQTT 5, ``commands`` keeps the retain flag as published (so that a
    retained command is recognised even when it arrives live) and
    ``others_only`` leaves out what this client published itself.
    """
    if mqtt.protocol != "5":
        return (topic, 1)
    return (
        topic,
        SubscribeOptions(qos=1, retainAsPublished=commands, noLocal=others_only),
    )


async def subscribe(client: aiomqtt.Client, subscriptions: list[Subscription]) -> None:
    """Subscribe the stop line to all of ``subscriptions`` at once."""
    await client.subscribe(subscriptions)  # type: ignore[arg-type]  # one kind per protocol


class Connection:
    """The main broker connection, its network loop in a thread of its own.

    ``receive`` is called in that thread with every message, in order; it must
    be quick and must not touch the event loop's objects (see
    :class:`gunctl.mqtt.handoff.Handoff`). Everything else is called on the
    event loop: :meth:`publish` hands a message to paho (which writes it from
    its thread) and returns a future that ends when the broker has it (QoS 1)
    or when it is written (QoS 0); :attr:`lost` ends with an
    :class:`aiomqtt.MqttError` when the connection drops. As ``async with``
    it connects (a negative answer or a timeout raises ``MqttError``) and, on
    the way out, disconnects and waits for the thread to end.
    """

    def __init__(
        self,
        settings: ServeSettings,
        identifier: str,
        receive: Callable[[Incoming], None],
        *,
        will: Will | None = None,
        password: SecretStr | None = None,
    ) -> None:
        self._settings = settings
        self._receive = receive
        self._v5 = settings.mqtt.protocol == "5"
        # the bridge reconnects, and announces itself again
        client = paho_client(settings.mqtt, identifier, password, will=will)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self._waiting: dict[int, asyncio.Future[None]] = {}  # message id -> its acknowledgement
        # acknowledgements from the network thread, handed over in batches: one wake-up of
        # the event loop for many, not one each
        self._acks: deque[tuple[int, str | None]] = deque()
        self._acks_due = False
        self._leaving = False

    # -- on the event loop ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await asyncio.to_thread(self._connect)  # DNS, TCP, TLS and paho's socket pair block
        except (OSError, ValueError) as exc:
            raise aiomqtt.MqttError(str(exc)) from None
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await asyncio.shield(self._connected)
        except BaseException:
            await self._close()
            if not self._connected.done():
                raise aiomqtt.MqttError("the broker did not answer the connection") from None
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._close()

    def publish(
        self,
        topic: str,
        payload: PayloadType,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> asyncio.Future[None]:
        """Hand a message to the network thread; the future ends when it is through."""
        if self.lost.done():
            raise aiomqtt.MqttError("the connection to the broker is lost")
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttError(f"could not publish to {topic}: {paho.error_string(info.rc)}")
        done = self._loop.create_future()
        self._waiting[info.mid] = done  # before the acknowledgement's callback can run
        return done

    async def subscribe(self, subscriptions: list[Subscription]) -> None:
        """Subscribe to all of ``subscriptions`` at once (those the broker refuses are logged)."""
        result, mid = self._client.subscribe(subscriptions)  # type: ignore[arg-type]
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise aiomqtt.MqttError(f"could not subscribe: {paho.error_string(result)}")
        done = self._loop.create_future()
        self._waiting[mid] = done
        async with asyncio.timeout(TIMEOUT_S):
            await asyncio.shield(done)

    def _connect(self) -> None:
        connect(self._client, self._settings.mqtt)
        self._client.loop_start()

    async def _close(self) -> None:
        self._leaving = True
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        for waiting in self._waiting.values():
            waiting.cancel()
        self._waiting.clear()
        if not self.lost.done():
            self.lost.set_result(None)

    def _settle(self, mid: int, refused: str | None) -> None:
        """A publish or subscription is through; one the broker refused (its ACL) is logged.

        It is not retried: the broker would refuse it again.
        """
        if refused is not None:
            log.warning("broker_refused", refused=refused)
        done = self._waiting.pop(mid, None)
        if done is not None and not done.done():
            done.set_result(None)

    def _settle_acks(self) -> None:
        self._acks_due = False  # before taking: an acknowledgement added from now wakes us again
        while self._acks:
            self._settle(*self._acks.popleft())

    def _ended(self, future: asyncio.Future[None], error: str | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(aiomqtt.MqttError(error))
            if future is self.lost:
                future.exception()  # read here: nobody may be waiting on it yet

    # -- in the network thread: hand over, never block --------------------------------

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, code: ReasonCode, *_: Any
    ) -> None:
        error = None if not code.is_failure else f"the broker refused the connection: {code}"
        self._loop.call_soon_threadsafe(self._ended, self._connected, error)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, code: ReasonCode, *_: Any
    ) -> None:
        if self._leaving:
            return
        error = f"the connection to the broker was lost: {code}"
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody to tell
            self._loop.call_soon_threadsafe(self._ended, self.lost, error)
            self._loop.call_soon_threadsafe(self._ended, self._connected, error)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        acknowledge_now(client)
        try:
            incoming = Incoming(
                message.topic,
                bytes(message.payload),
                bool(message.retain),
                getattr(message, "properties", None) if self._v5 else None,
            )
            self._receive(incoming)
        except Exception:  # an error here would end paho's thread, and the connection
            log.exception("message_failed", topic=repr(message._topic[:200]))

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, code: ReasonCode, *_: Any
    ) -> None:
        acknowledge_now(client)
        self._acks.append((mid, f"a message: {code}" if code.is_failure else None))
        if not self._acks_due:
            self._acks_due = True
            with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._settle_acks)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, codes: list[ReasonCode], *_: Any
    ) -> None:
        failed = [str(code) for code in codes if code.is_failure]
        refused = f"subscriptions: {', '.join(failed)}" if failed else None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._settle, mid, refused)
