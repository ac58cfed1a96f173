"""The stop line: a second broker connection that carries nothing but stops.

A broker keeps one queue per client and drops what overflows it (Mosquitto:
``max_queued_messages``, 1000 by default). Junk flooding the main connection's
``set`` subscriptions can fill that queue, and a stop behind the junk would be
dropped or arrive seconds late. On this connection the daemon subscribes only
to its own guns' ``<device>/stop`` topics and to the two bridge stop topics, so
nothing but stops for its own guns can queue ahead of a stop. Every message
that is not empty (an empty one clears a retained message) is a stop
(:func:`gunctl.mqtt.commands.parse_stop`), handed to the same
:class:`~gunctl.mqtt.intake.Intake` as everything else, answered on the gun's
``result`` topic through the main connection's outbox. It publishes nothing and
has no last will: the main connection speaks for the daemon.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import structlog

from gunctl.config import ServeSettings
from gunctl.daemon import Backoff
from gunctl.mqtt.client import Incoming, make_client, subscribe, subscription
from gunctl.mqtt.intake import Intake
from gunctl.mqtt.topics import Topics

log = structlog.get_logger("gunctl.mqtt")


class StopLine:
    def __init__(
        self,
        settings: ServeSettings,
        topics: Topics,
        intake: Intake,
        identifier: str,
        backoff: Backoff,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.intake = intake
        self.identifier = identifier
        self.backoff = backoff
        self.connected = asyncio.Event()
        self.connections = 0

    async def run(self) -> None:
        """Stay connected until cancelled, retrying after a jittered back-off."""
        failures = 0
        while True:
            try:
                password = await asyncio.to_thread(self.settings.mqtt.password)  # a file read
                async with make_client(self.settings, self.identifier, password=password) as client:
                    failures = 0
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                failures += 1
                delay = self.backoff.delay(failures)
                log.warning("stop_line_lost", error=str(exc), retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)

    async def _serve(self, client: aiomqtt.Client) -> None:
        t = self.topics
        topics = [t.stop(d) for d in sorted(self.intake.daemon.slots)]
        topics += [t.bridge_stop, t.bridge_stop_all]
        await subscribe(
            client, [subscription(self.settings.mqtt, s, commands=True) for s in topics]
        )
        self.connections += 1
        self.connected.set()
        log.info("stop_line_connected", topics=len(topics))
        try:
            async for message in client.messages:
                try:
                    self._dispatch(Incoming.of(message))
                except Exception:
                    log.exception("stop_failed", topic=message.topic.value)
                await asyncio.sleep(0)  # let the control loops run between two messages
        finally:
            self.connected.clear()

    def _dispatch(self, message: Incoming) -> None:
        topic = message.topic
        if topic in (self.topics.bridge_stop, self.topics.bridge_stop_all):
            self.intake.bridge_command(message, stop_topic=True)
        elif (device_id := self.topics.device_of(topic, "stop")) in self.intake.daemon.slots:
            assert device_id is not None
            self.intake.device_stop(device_id, message)
