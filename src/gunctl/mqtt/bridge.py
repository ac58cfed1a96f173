"""The MQTT bridge: one broker connection, kept up, moving messages both ways.

The connection does not reconnect by itself, so :meth:`Bridge.run` is a loop
around ``async with Connection(...)``: each time it connects it announces the
bridge (``online``, retained; the broker publishes the retained ``offline``
last will if the process dies), subscribes again, and publishes again what a
newcomer or a broker that lost its store needs: discovery, availability and
state of every device, and the diagnostics. A lost connection is retried after
a jittered back-off; the guns are not touched by any of this (a session in
progress goes on under its Supervisor).

Outgoing messages go through one outbox drained by one sender task, in order.
Session events and results produced while the broker is away wait there and go
out after the reconnect; state and telemetry wait as their newest value only
(:mod:`gunctl.mqtt.outbox`).

Commands come in on two other connections, each of its own. The ``set``
topics, which anyone allowed to publish can flood, are read in a process of
their own (the commands process, :mod:`gunctl.mqtt.setline`), which refuses
and counts junk there and hands the daemon only the commands for its guns and
for the bridge, so that no flood takes the daemon's CPU or its GIL. The
``stop`` topics are read by the stop line (:mod:`gunctl.mqtt.stopline`), in
the daemon, which stops every gun also while the commands process is down.
The main connection reads what is left (other daemons' retained messages,
Home Assistant's status) in a thread of its own (:mod:`gunctl.mqtt.client`),
handed to the event loop through a bounded hand-off taken in short slices
(:mod:`gunctl.mqtt.handoff`).

Incoming commands are parsed and handed to :meth:`Daemon.submit`, whose
per-gun lane runs them in arrival order with a stop winning over everything
that arrived before it (:mod:`gunctl.lane`). Every command gets a result on
``<device>/result`` and, under MQTT 5, on the message's response topic with its
correlation data.

Several daemons may share a broker. Each acts only on its own devices. To
answer a command for a device nobody serves, every daemon's commands process
also listens to ``<base>/+/set`` and to the retained availability of every
device: a device with a retained availability is someone's, and is left alone;
for any other, the daemon with the lowest node id among the bridges online
answers ``unknown_device``, so exactly one answer comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import aiomqtt
import structlog

from gunctl import __version__
from gunctl.config import ServeSettings
from gunctl.control.events import Event
from gunctl.daemon import Backoff, Daemon, DeviceSlot
from gunctl.mqtt import discovery, payloads
from gunctl.mqtt.client import (
    Connection,
    Incoming,
    Subscription,
    Will,
    subscription,
)
from gunctl.mqtt.handoff import Handoff
from gunctl.mqtt.intake import Intake
from gunctl.mqtt.neighbours import Neighbours
from gunctl.mqtt.outbox import Outbox, Outgoing, as_json
from gunctl.mqtt.setline import SetLine
from gunctl.mqtt.stopline import StopLine
from gunctl.mqtt.topics import OFFLINE, ONLINE, Topics

log = structlog.get_logger("gunctl.mqtt")

STATE_COALESCE_S = 0.05
DEVICE_LIST_WAIT_S = 1.0
SET_LINE_WAIT_S = 20.0  # the commands process starts in 0.5 s, several on a loaded machine


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
        self.connections = 0
        self.connected = asyncio.Event()  # set while connected and announced
        self.outbox = Outbox()
        self._put = self.outbox.put
        self.handoff: Handoff[Incoming] = Handoff(self._dispatch)
        # one MQTT client id per process: two daemons given the same node id do not
        # take each other's connection over (see _duplicate)
        self.instance = secrets.token_hex(4)
        self.neighbours = Neighbours(settings.node_id, self.instance)
        self.intake = Intake(
            settings,
            self.topics,
            daemon,
            self.outbox,
            self.handoff,
            mark=self._mark,
            changed=self._counters_changed,
        )
        self.stopline = StopLine(
            settings,
            self.topics,
            self.intake,
            f"gunctl-{settings.node_id}-{self.instance}-stop",
            self.backoff,
        )
        self.setline = SetLine(
            settings,
            self.topics,
            self.intake,
            f"gunctl-{settings.node_id}-{self.instance}-set",
            self.instance,
            self.backoff,
        )
        self._dirty: set[str] = set()
        self._diagnostics_dirty = True
        self._state_wake = asyncio.Event()
        self._previous: set[str] = set()  # this node's device list from an earlier run
        self._reasserted: dict[str, float] = {}  # topic -> when online was last said again
        self._listed = False
        self._firmware: dict[str, str | None] = {}
        self._stopping = asyncio.Event()
        self._diary_sent: dict[str, Any] | None = None  # the diary document last published
        daemon.subscribe(self)
        daemon.watch_diary(self._state_wake.set)

    # -- what the daemon tells us --------------------------------------------------

    def on_event(self, slot: DeviceSlot, event: Event) -> None:
        self._put(Outgoing(self.topics.event(slot.device_id), event.model_dump_json()))
        self._mark(slot.device_id)

    def on_link(self, slot: DeviceSlot, online: bool) -> None:
        self._put(self._availability(slot, online))
        self._mark(slot.device_id)

    # -- the connection loop -------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until :meth:`stop`; then say offline and disconnect."""
        failures = 0
        mqtt = self.settings.mqtt
        lines = [
            asyncio.create_task(self.stopline.run(), name="mqtt stop line"),
            asyncio.create_task(self.setline.run(), name="mqtt set line"),
        ]
        will = Will(self.topics.bridge_state, OFFLINE)
        self.handoff.bind(asyncio.get_running_loop())
        identifier = f"gunctl-{self.settings.node_id}-{self.instance}"
        while not self._stopping.is_set():
            try:
                password = await asyncio.to_thread(self.settings.mqtt.password)  # a file read
                async with Connection(
                    self.settings, identifier, self.handoff.offer, will=will, password=password
                ) as connection:
                    failures = 0
                    await self._serve(connection)
            except aiomqtt.MqttError as exc:
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
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
        self.connected.clear()
        for line in lines:
            line.cancel()
        await asyncio.gather(*lines, return_exceptions=True)

    async def flushed(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far has gone to the broker."""
        await self.outbox.flushed(timeout)

    @property
    def rejected(self) -> dict[str, int]:
        """Refused commands, by reason."""
        return self.intake.rejected

    def _counters_changed(self) -> None:
        self._diagnostics_dirty = True
        self._state_wake.set()

    def stop(self) -> None:
        """Ask :meth:`run` to publish offline, disconnect and return."""
        self._stopping.set()

    async def _serve(self, connection: Connection) -> None:
        self.connections += 1
        self._diagnostics_dirty = True
        tasks: list[asyncio.Future[Any]] = [connection.lost]
        lister: asyncio.Task[None] | None = None
        try:
            await connection.publish(self.topics.bridge_state, ONLINE, qos=1, retain=True)
            await connection.subscribe(self._subscriptions())
            await self._set_line_up()
            self._announce()
            log.info(
                "broker_connected",
                host=self.settings.mqtt.host,
                port=self.settings.mqtt.port,
                node=self.settings.node_id,
                connection=self.connections,
            )
            tasks += [
                asyncio.create_task(self.outbox.send(connection), name="mqtt send"),
                asyncio.create_task(self._states(), name="mqtt state"),
                asyncio.create_task(self._telemetry(), name="mqtt telemetry"),
            ]
            if not self._listed:  # ends by itself, so not among the tasks watched below
                lister = asyncio.create_task(self._list_devices_soon(), name="mqtt list")
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
            for task in [*tasks, *([lister] if lister is not None else [])]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _subscriptions(self) -> list[Subscription]:
        """No ``set`` topic: the broker would queue a flood of junk for this connection too."""
        t = self.topics
        return [
            *(
                subscription(self.settings.mqtt, topic)
                for topic in (
                    t.any_availability,
                    t.any_bridge_state,
                    t.any_bridge_devices,
                    t.ha_status,
                )
            ),
            # another daemon with this node id publishes here too; our own are left out
            subscription(self.settings.mqtt, t.bridge_diagnostics, others_only=True),
        ]

    async def _set_line_up(self) -> None:
        """Announce the guns once their ``set`` topics are read, or after SET_LINE_WAIT_S.

        A command published before the commands process subscribes is read by no
        one; so availability and state go out when it is up. If it cannot come up,
        the guns are announced all the same: their stop topics work.
        """
        try:
            async with asyncio.timeout(SET_LINE_WAIT_S):
                await self.setline.connected.wait()
        except TimeoutError:
            log.error("set_line_not_up", waited_s=SET_LINE_WAIT_S)

    async def _goodbye(self) -> None:
        """Flush what is queued (the events of the stops), then say offline, device by device."""
        for slot in self.daemon.slots.values():
            self._put(self._availability(slot, False))
            # the links are let go right after this: the retained state must not say connected
            state = {**payloads.device_state(slot), "connected": False}
            self._put(Outgoing(self.topics.state(slot.device_id), as_json(state), retain=True))
        self._put(Outgoing(self.topics.bridge_state, OFFLINE, retain=True))
        with contextlib.suppress(TimeoutError):
            await self.flushed()
        log.info("bridge_offline", node=self.settings.node_id)

    # -- sending -------------------------------------------------------------------

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
        firmware = slot.state().firmware
        self._firmware[slot.device_id] = firmware
        spec = slot.spec
        advertised = device.advertised if device is not None else None
        name, address = advertised if advertised is not None else (None, None)
        config = discovery.device_config(
            self.topics,
            slot.device_id,
            name=self.settings.names.get(slot.device_id) or name or f"Massage gun {slot.device_id}",
            address=address,
            model=spec.title if spec is not None else "massage gun (not yet connected)",
            manufacturer="gunsim (simulated)" if slot.kind == "sim" else _maker(spec),
            firmware=firmware,
            protocols=self.daemon.protocol_titles,
            simulated=slot.kind == "sim",
        )
        return Outgoing(self.topics.discovery(slot.device_id), as_json(config), retain=True)

    def _announce(self) -> None:
        """Everything retained, again: after a (re)connect, or when Home Assistant comes online."""
        for slot in self.daemon.slots.values():
            self._put(self._discovery(slot))
            self._put(self._availability(slot))
            self._mark(slot.device_id)
        self._diagnostics_dirty = True
        self._diary_sent = None
        self._state_wake.set()

    async def _states(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.state_interval_s
        periodic = loop.time() + interval
        while True:
            # asyncio.timeout, not wait_for: in Python 3.11, wait_for swallows a cancellation
            # that comes as the event is set, and the connection's teardown waited forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, periodic - loop.time())):
                    await self._state_wake.wait()
            self._state_wake.clear()
            if loop.time() >= periodic:
                periodic = loop.time() + interval
                self.intake.flush_log()
                self._dirty.update(d for d, s in self.daemon.slots.items() if s.connected)
                self._diagnostics_dirty = True
            dirty, self._dirty = self._dirty, set()
            for device_id in sorted(dirty):
                slot = self.daemon.slots[device_id]
                state = payloads.device_state(slot)
                if state["firmware"] != self._firmware.get(device_id):
                    self._put(self._discovery(slot))
                self._put(Outgoing(self.topics.state(device_id), as_json(state), retain=True))
            diary = payloads.diary(self.daemon.diary)
            if diary is not None and diary != self._diary_sent:
                self._diary_sent = diary
                self._put(Outgoing(self.topics.bridge_diary, as_json(diary), retain=True))
            if self._diagnostics_dirty:
                self._diagnostics_dirty = False
                self._put(
                    Outgoing(
                        self.topics.bridge_diagnostics, as_json(self.diagnostics()), retain=True
                    )
                )
            await asyncio.sleep(STATE_COALESCE_S)

    async def _telemetry(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.settings.telemetry_hz
        deadline = loop.time()
        while True:
            deadline = max(deadline + period, loop.time())
            await asyncio.sleep(deadline - loop.time())
            for slot in self.daemon.slots.values():
                values = payloads.telemetry(slot)
                if values is not None:
                    self._put(
                        Outgoing(
                            self.topics.telemetry(slot.device_id),
                            as_json(values),
                            qos=0,
                            latest=True,
                        )
                    )

    def diagnostics(self) -> dict[str, Any]:
        return {
            "node": self.settings.node_id,
            "instance": self.instance,
            "duplicate_node": self.neighbours.duplicate is not None,
            "neighbours": self.neighbours.stats(),
            "version": __version__,
            "devices": sorted(self.daemon.slots),
            "connected": sorted(d for d, s in self.daemon.slots.items() if s.connected),
            "connections": self.connections,
            "stop_line_connections": self.stopline.connections,
            "set_line": self.setline.stats(),
            "commands": self.intake.commands,
            "rejected": dict(sorted(self.rejected.items())),
            "unanswered": self.intake.unanswered,
            "outbox": self.outbox.stats(),
            "received": {"waiting": len(self.handoff), "most_waiting": self.handoff.most_waiting},
            "guns": {
                device_id: {**self.intake.tally.of(device_id), **slot.loop_and_link()}
                for device_id, slot in sorted(self.daemon.slots.items())
            },
            "updated_at": payloads.now_iso(),
        }

    # -- the device list, to remove the devices that left the configuration ------------

    async def _list_devices_soon(self) -> None:
        """Once every retained message has come in: remove what left, then list what is here."""
        await asyncio.sleep(DEVICE_LIST_WAIT_S)
        if self._listed:
            return
        self._listed = True
        for device_id in sorted(self.neighbours.removable(self._previous, set(self.daemon.slots))):
            if not self.topics.device_of(self.topics.state(device_id), "state"):
                continue  # not a device id we could have published
            log.info("device_removed", device=device_id)
            for topic in (
                self.topics.discovery(device_id),
                self.topics.availability(device_id),
                self.topics.state(device_id),
            ):
                self._put(Outgoing(topic, b"", retain=True))
        self._put(
            Outgoing(self.topics.bridge_devices, as_json(sorted(self.daemon.slots)), retain=True)
        )

    def _reassert(self, topic: str) -> None:
        """Someone published offline for what is online here: say online again, once a second."""
        if self._stopping.is_set():
            return
        now = asyncio.get_running_loop().time()
        if now - self._reasserted.get(topic, -1.0) < 1.0:
            return
        self._reasserted[topic] = now
        log.warning("offline_contradicted", topic=topic)
        self._put(Outgoing(topic, ONLINE, retain=True))

    # -- receiving -----------------------------------------------------------------

    def _dispatch(self, message: Incoming) -> None:
        """On the event loop, in the order read: one message from the main connection."""
        t = self.topics
        topic = message.topic
        payload = message.payload
        if (device_id := t.device_of(topic, "availability")) is not None:
            self.neighbours.availability(device_id, payload)
            slot = self.daemon.slots.get(device_id)
            if slot is not None and slot.connected and payload != ONLINE.encode():
                self._reassert(topic)
        elif (node := t.node_of(topic, "state")) is not None:
            self.neighbours.bridge_state(node, payload)
            if node == self.settings.node_id and payload != ONLINE.encode():
                self._reassert(topic)
        elif (node := t.node_of(topic, "devices")) is not None:
            listed = self.neighbours.device_list(node, payload)
            if node == self.settings.node_id and message.retain and not self._listed:
                self._previous = listed
        elif (node := t.node_of(topic, "diagnostics")) is not None and not message.retain:
            self.neighbours.diagnostics(node, payload)
        elif topic == t.ha_status and payload == ONLINE.encode():
            log.info("home_assistant_online")
            self._announce()


def _maker(spec: Any) -> str:
    """A manufacturer for Home Assistant: the first word of the family's title."""
    if spec is None:
        return "unknown"
    return str(spec.title).split(" ")[0]
