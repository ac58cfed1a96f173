"""The MQTT bridge: one broker connection, kept up, moving messages both ways.

aiomqtt has no automatic reconnect, so :meth:`Bridge.run` is a loop around
``async with aiomqtt.Client(...)``: each time it connects it announces the
bridge (``online``, retained; the broker publishes the retained ``offline``
last will if the process dies), subscribes again, and publishes again what a
newcomer or a broker that lost its store needs: discovery, availability and
state of every device, and the diagnostics. A lost connection is retried after
a jittered back-off; the guns are not touched by any of this (a session in
progress goes on under its Supervisor).

Outgoing messages go through one outbox drained by one sender task, in order.
Session events and results produced while the broker is away wait there (up to
a bound) and go out after the reconnect; telemetry is not queued.

Incoming commands are parsed here and handed to :meth:`Daemon.submit`, whose
per-gun lane runs them in arrival order with a stop winning over everything
that arrived before it (:mod:`gunctl.lane`). Every command gets a result on
``<device>/result`` and, under MQTT 5, on the message's response topic with its
correlation data.

Several daemons may share a broker. Each acts only on its own devices. To
answer a command for a device nobody serves, every daemon also listens to
``<base>/+/set`` and to the retained availability of every device: a device
with a retained availability is someone's, and is left alone; for any other,
the daemon with the lowest node id among the bridges online answers
``unknown_device``, so exactly one answer comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gunctl import __version__
from gunctl.config import ServeSettings
from gunctl.control.events import Event
from gunctl.daemon import Backoff, Daemon, DeviceSlot
from gunctl.mqtt import discovery, payloads
from gunctl.mqtt.commands import (
    REASONS,
    CommandError,
    DeviceCommand,
    Received,
    parse_bridge_command,
    parse_device_command,
)
from gunctl.mqtt.topics import OFFLINE, ONLINE, Topics

if TYPE_CHECKING:
    from aiomqtt.types import PayloadType

log = structlog.get_logger("gunctl.mqtt")

OUTBOX_MAX = 2000  # events and results kept while the broker is away
STATE_COALESCE_S = 0.05
DEVICE_LIST_WAIT_S = 1.0


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: PayloadType
    qos: int = 1
    retain: bool = False
    properties: Properties | None = None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _bytes(payload: PayloadType) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode()


class Bridge:
    def __init__(
        self,
        settings: ServeSettings,
        daemon: Daemon,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        mqtt = settings.mqtt
        self.settings = settings
        self.daemon = daemon
        self.topics = Topics(settings.node_id, mqtt.base_topic, mqtt.discovery_prefix)
        self.backoff = backoff or Backoff(first_s=0.5, cap_s=15.0)
        self.rejected: Counter[str] = Counter({reason: 0 for reason in REASONS})
        self.commands = 0
        self.connections = 0
        self.connected = asyncio.Event()  # set while connected and announced
        self._outbox: deque[Outgoing] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set while the outbox is empty
        self._dirty: set[str] = set()
        self._diagnostics_dirty = True
        self._state_wake = asyncio.Event()
        self._known: set[str] = set()  # devices with a retained availability, anyone's
        self._bridges: set[str] = set()  # nodes whose bridge state is online
        self._running: set[asyncio.Task[Any]] = set()
        self._listed = False
        self._firmware: dict[str, str | None] = {}
        self._stopping = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        daemon.listener = self

    # -- what the daemon tells us --------------------------------------------------

    def on_event(self, slot: DeviceSlot, event: Event) -> None:
        self._put(Outgoing(self.topics.event(slot.device_id), event.model_dump_json()))
        self._mark(slot.device_id)

    def on_link(self, slot: DeviceSlot, online: bool) -> None:
        self._put(self._availability(slot, online))
        self._mark(slot.device_id)

    # -- the connection loop -------------------------------------------------------

    def _client_for(self) -> aiomqtt.Client:
        mqtt = self.settings.mqtt
        password = mqtt.password()
        tls = aiomqtt.TLSParameters(ca_certs=str(mqtt.tls_ca)) if mqtt.tls_ca else None
        protocol = (
            aiomqtt.ProtocolVersion.V5 if mqtt.protocol == "5" else aiomqtt.ProtocolVersion.V311
        )
        return aiomqtt.Client(
            mqtt.host,
            mqtt.port,
            username=mqtt.user,
            password=password.get_secret_value() if password is not None else None,
            identifier=f"gunctl-{self.settings.node_id}",
            protocol=protocol,
            will=aiomqtt.Will(self.topics.bridge_state, OFFLINE, qos=1, retain=True),
            keepalive=mqtt.keepalive_s,
            tls_params=tls,
            timeout=10.0,
        )

    async def run(self) -> None:
        """Stay connected until :meth:`stop`; then say offline and disconnect."""
        failures = 0
        mqtt = self.settings.mqtt
        while not self._stopping.is_set():
            try:
                async with self._client_for() as client:
                    failures = 0
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                self._client = None
                self.connected.clear()
                if self._stopping.is_set():
                    break
                failures += 1
                delay = self.backoff.delay(failures)
                log.warning(
                    "broker_unreachable",
                    host=mqtt.host,
                    port=mqtt.port,
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        self._client = None
        self.connected.clear()
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def flushed(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far has gone to the broker."""
        await asyncio.wait_for(self._drained.wait(), timeout)

    def stop(self) -> None:
        """Ask :meth:`run` to publish offline, disconnect and return."""
        self._stopping.set()

    async def _serve(self, client: aiomqtt.Client) -> None:
        self._client = client
        self.connections += 1
        self._diagnostics_dirty = True
        receiver = asyncio.create_task(self._receive(client), name="mqtt receive")
        tasks = [receiver]
        try:
            await client.publish(self.topics.bridge_state, ONLINE, qos=1, retain=True)
            await client.subscribe(self._subscriptions())
            self._announce()
            log.info(
                "broker_connected",
                host=self.settings.mqtt.host,
                port=self.settings.mqtt.port,
                node=self.settings.node_id,
                connection=self.connections,
            )
            tasks += [
                asyncio.create_task(self._send(client), name="mqtt send"),
                asyncio.create_task(self._states(), name="mqtt state"),
                asyncio.create_task(self._telemetry(), name="mqtt telemetry"),
            ]
            if not self._listed:
                self._spawn(self._list_devices_soon())  # ends by itself: not watched below
            self.connected.set()
            stopping: asyncio.Task[Any] = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                for task in tasks[2:]:  # state and telemetry: nothing new after this
                    task.cancel()
                await self._goodbye()
                return
            stopping.cancel()
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            raise aiomqtt.MqttError("a bridge task ended")
        finally:
            self.connected.clear()
            self._client = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _subscriptions(self) -> list[tuple[str, int]]:
        t = self.topics
        own = (
            [(t.any_set, 1)]
            if self.settings.mqtt.answer_unknown_devices
            else [(t.set(d), 1) for d in self.daemon.slots]
        )
        return [
            *own,
            (t.bridge_set_all, 1),
            (t.bridge_set, 1),
            (t.any_availability, 1),
            (t.any_bridge_state, 1),
            (t.bridge_devices, 1),
            (t.ha_status, 1),
        ]

    async def _goodbye(self) -> None:
        """Flush what is queued (the events of the stops), then say offline, device by device."""
        for slot in self.daemon.slots.values():
            self._put(self._availability(slot, False))
            self._put(
                Outgoing(
                    self.topics.state(slot.device_id),
                    _json(payloads.device_state(slot)),
                    retain=True,
                )
            )
        self._put(Outgoing(self.topics.bridge_state, OFFLINE, retain=True))
        with contextlib.suppress(TimeoutError):
            await self.flushed()
        log.info("bridge_offline", node=self.settings.node_id)

    # -- sending -------------------------------------------------------------------

    def _put(self, message: Outgoing) -> None:
        if len(self._outbox) >= OUTBOX_MAX:
            self._outbox.popleft()
        self._outbox.append(message)
        self._drained.clear()
        self._wake.set()

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            while self._outbox:
                message = self._outbox[0]
                await client.publish(
                    message.topic,
                    message.payload,
                    qos=message.qos,
                    retain=message.retain,
                    properties=message.properties,
                )
                if self._outbox and self._outbox[0] is message:
                    self._outbox.popleft()
            self._drained.set()
            self._wake.clear()
            await self._wake.wait()

    def _mark(self, device_id: str) -> None:
        self._dirty.add(device_id)
        self._state_wake.set()

    def _availability(self, slot: DeviceSlot, online: bool | None = None) -> Outgoing:
        up = slot.connected if online is None else online
        return Outgoing(
            self.topics.availability(slot.device_id), ONLINE if up else OFFLINE, retain=True
        )

    def _discovery(self, slot: DeviceSlot) -> Outgoing:
        device = slot.device
        firmware = device.supervisor.firmware if device is not None else None
        self._firmware[slot.device_id] = firmware
        spec = slot.spec
        config = discovery.device_config(
            self.topics,
            slot.device_id,
            model=spec.title if spec is not None else "massage gun (not yet connected)",
            manufacturer="gunsim (simulated)" if slot.kind == "sim" else _maker(spec),
            firmware=firmware,
            protocols=self.daemon.protocols,
        )
        return Outgoing(self.topics.discovery(slot.device_id), _json(config), retain=True)

    def _announce(self) -> None:
        """Everything retained, again: after a (re)connect, or when Home Assistant comes online."""
        for slot in self.daemon.slots.values():
            self._put(self._discovery(slot))
            self._put(self._availability(slot))
            self._mark(slot.device_id)
        self._diagnostics_dirty = True
        self._state_wake.set()

    async def _states(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.state_interval_s
        periodic = loop.time() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_wake.wait(), max(0.0, periodic - loop.time()))
            self._state_wake.clear()
            if loop.time() >= periodic:
                periodic = loop.time() + interval
                self._dirty.update(d for d, s in self.daemon.slots.items() if s.connected)
                self._diagnostics_dirty = True
            dirty, self._dirty = self._dirty, set()
            for device_id in sorted(dirty):
                slot = self.daemon.slots[device_id]
                state = payloads.device_state(slot)
                if state["firmware"] != self._firmware.get(device_id):
                    self._put(self._discovery(slot))
                self._put(Outgoing(self.topics.state(device_id), _json(state), retain=True))
            if self._diagnostics_dirty:
                self._diagnostics_dirty = False
                self._put(
                    Outgoing(self.topics.bridge_diagnostics, _json(self.diagnostics()), retain=True)
                )
            await asyncio.sleep(STATE_COALESCE_S)

    async def _telemetry(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.settings.telemetry_hz
        deadline = loop.time()
        while True:
            deadline = max(deadline + period, loop.time())
            await asyncio.sleep(deadline - loop.time())
            if (
                len(self._outbox) > 100
            ):  # the broker is slow or gone: telemetry is not worth queueing
                continue
            for slot in self.daemon.slots.values():
                values = payloads.telemetry(slot)
                if values is not None:
                    self._put(Outgoing(self.topics.telemetry(slot.device_id), _json(values), qos=0))

    def diagnostics(self) -> dict[str, Any]:
        return {
            "node": self.settings.node_id,
            "version": __version__,
            "devices": sorted(self.daemon.slots),
            "connected": sorted(d for d, s in self.daemon.slots.items() if s.connected),
            "connections": self.connections,
            "commands": self.commands,
            "rejected": dict(sorted(self.rejected.items())),
            "updated_at": payloads.now_iso(),
        }

    # -- the device list, to remove the devices that left the configuration ------------

    async def _list_devices_soon(self) -> None:
        await asyncio.sleep(DEVICE_LIST_WAIT_S)
        if not self._listed:  # no list retained from an earlier run: this is the first
            self._listed = True
            self._put(self._device_list())

    def _device_list(self) -> Outgoing:
        return Outgoing(self.topics.bridge_devices, _json(sorted(self.daemon.slots)), retain=True)

    def _prune(self, payload: bytes) -> None:
        try:
            previous = json.loads(payload) if payload else []
        except ValueError:
            previous = []
        if not isinstance(previous, list):
            previous = []
        for device_id in sorted(
            {d for d in previous if isinstance(d, str)} - set(self.daemon.slots)
        ):
            if not self.topics.device_of(self.topics.state(device_id), "state"):
                continue  # not a device id we could have published
            log.info("device_removed", device=device_id)
            for topic in (
                self.topics.discovery(device_id),
                self.topics.availability(device_id),
                self.topics.state(device_id),
            ):
                self._put(Outgoing(topic, b"", retain=True))
            self._known.discard(device_id)
        self._listed = True
        self._put(self._device_list())

    # -- receiving -----------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                self._dispatch(message)
            except Exception:
                log.exception("message_failed", topic=message.topic.value)

    def _dispatch(self, message: aiomqtt.Message) -> None:
        t = self.topics
        topic = message.topic.value
        payload = _bytes(message.payload)
        if topic in (t.bridge_set_all, t.bridge_set):
            self._spawn(self._bridge_command(message, payload))
        elif (device_id := t.device_of(topic, "set")) is not None:
            self._device_command(device_id, message, payload)
        elif (device_id := t.device_of(topic, "availability")) is not None:
            if payload:
                self._known.add(device_id)
            else:
                self._known.discard(device_id)
        elif (node := t.node_of_state(topic)) is not None:
            if payload == ONLINE.encode():
                self._bridges.add(node)
            else:
                self._bridges.discard(node)
        elif topic == t.ha_status:
            if payload == ONLINE.encode():
                log.info("home_assistant_online")
                self._announce()
        elif topic == t.bridge_devices and message.retain and not self._listed:
            self._prune(payload)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _device_command(self, device_id: str, message: aiomqtt.Message, payload: bytes) -> None:
        if device_id not in self.daemon.slots:
            if (
                device_id in self._known
                or min(self._bridges | {self.settings.node_id}) != self.settings.node_id
            ):
                return  # another daemon's device, or another daemon answers for strangers
            action: str | None
            try:
                command = parse_device_command(payload).command
                command_id, action = command.id, command.action
            except CommandError as exc:
                command_id, action = exc.command_id, exc.action
            error = CommandError(
                "unknown_device",
                f"no gunctl instance serves a device {device_id!r} "
                f"(none has published {self.topics.availability(device_id)})",
            )
            self._refuse(device_id, message, command_id, action, error)
            return
        try:
            received = parse_device_command(payload)
        except CommandError as exc:
            self._refuse(device_id, message, exc.command_id, exc.action, exc)
            return
        self._take(device_id, message, received)

    def _take(self, device_id: str, message: aiomqtt.Message, received: Received[Any]) -> None:
        """Hand a parsed command to the gun's lane; answer when it is done."""
        self.commands += 1
        self._diagnostics_dirty = True
        done = self.daemon.submit(device_id, received.command)
        done.add_done_callback(functools.partial(self._answer, device_id, message, received))

    def _answer(
        self,
        device_id: str,
        message: aiomqtt.Message,
        received: Received[DeviceCommand],
        done: asyncio.Future[dict[str, Any]],
    ) -> None:
        command = received.command
        if done.cancelled():
            return
        exc = done.exception()
        if exc is None:
            log.info("command_done", device=device_id, action=command.action, id=command.id)
            body = payloads.result(
                command.id,
                device=device_id,
                action=command.action,
                ignored=received.ignored,
                **done.result(),
            )
            self._reply(self.topics.result(device_id), message, body)
            self._mark(device_id)
            return
        if not isinstance(exc, CommandError):
            log.error("command_failed", device=device_id, action=command.action, error=repr(exc))
            exc = CommandError("refused", f"internal error: {exc}")
        self._refuse(device_id, message, command.id, command.action, exc, received.ignored)
        self._mark(device_id)

    async def _bridge_command(self, message: aiomqtt.Message, payload: bytes) -> None:
        node = self.settings.node_id
        try:
            received = parse_bridge_command(payload)
        except CommandError as exc:
            self._count(exc, None)
            body = payloads.result(
                exc.command_id,
                device=None,
                action=exc.action,
                error=exc.message,
                reason=exc.reason,
            )
            self._reply(self.topics.bridge_result, message, {**body, "node": node})
            return
        command = received.command
        self.commands += 1
        self._diagnostics_dirty = True
        self._state_wake.set()
        stopped = await self.daemon.stop_all()
        log.warning("stop_all", node=node, stopped=stopped, topic=message.topic.value)
        body = payloads.result(
            command.id,
            device=None,
            action=command.action,
            stopped=stopped,
            ignored=received.ignored,
        )
        self._reply(self.topics.bridge_result, message, {**body, "node": node})

    def _count(self, exc: CommandError, device_id: str | None) -> None:
        self.rejected[exc.reason] += 1
        self._diagnostics_dirty = True
        self._state_wake.set()
        log.warning("command_rejected", device=device_id, reason=exc.reason, error=exc.message)

    def _refuse(
        self,
        device_id: str,
        message: aiomqtt.Message,
        command_id: str | int | None,
        action: str | None,
        exc: CommandError,
        ignored: tuple[str, ...] = (),
    ) -> None:
        self._count(exc, device_id)
        body = payloads.result(
            command_id,
            device=device_id,
            action=action,
            error=exc.message,
            reason=exc.reason,
            ignored=ignored,
        )
        self._reply(self.topics.result(device_id), message, body)

    def _reply(self, topic: str, message: aiomqtt.Message, body: dict[str, Any]) -> None:
        text = _json(body)
        self._put(Outgoing(topic, text))
        properties = message.properties
        response = getattr(properties, "ResponseTopic", None) if properties is not None else None
        if not response:
            return
        if not self._safe_response_topic(response):
            log.warning("response_topic_refused", topic=response)
            return
        reply = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        correlation = getattr(properties, "CorrelationData", None)
        if correlation is not None:
            reply.CorrelationData = correlation
        self._put(Outgoing(response, text, properties=reply))

    def _safe_response_topic(self, topic: str) -> bool:
        """Not a wildcard, and not under gunctl's own or Home Assistant's topics."""
        if not topic or len(topic) > 256 or "+" in topic or "#" in topic:
            return False
        owned = (f"{self.topics.base}/", f"{self.topics.discovery_prefix}/")
        return not topic.startswith(owned)


def _maker(spec: Any) -> str:
    """A manufacturer for Home Assistant: the first word of the family's title."""
    if spec is None:
        return "unknown"
    return str(spec.title).split(" ")[0]
