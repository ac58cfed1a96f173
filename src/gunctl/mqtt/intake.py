"""Commands in: read, checked, handed to the gun's lane, answered; refusals counted.

Every command reaches this one place on the daemon's event loop, from the
commands process (``set`` topics, :mod:`gunctl.mqtt.setline`) or from the stop
line (``stop`` topics, :mod:`gunctl.mqtt.stopline`). Every command gets one
result on its result topic and, under MQTT 5, on the message's response topic
with its correlation data; refusals only as far as their rations allow.

Refusing is cheap, because anyone allowed to publish can send thousands of bad
messages. What the topic and payload alone decide is decided in the commands
process (:mod:`gunctl.mqtt.screen`), before anything reaches the daemon: a
message on a ``set`` topic for a device nobody here serves, that is not a
command (too large, not JSON, invalid), or that is retained, is refused,
counted and answered there. The daemon gets the commands for its guns' lanes
and for the bridge, and the counts (:meth:`Intake.counted`). A command a lane
took gets its result at QoS 1, and a refusal of it an event too, unless that
gun's lane refused more than :data:`~gunctl.mqtt.tally.REFUSAL_ANSWERS_PER_S`
in the last second (a flood of valid starts while a session runs); every
refusal is counted and logged in aggregate (:mod:`gunctl.mqtt.tally`).

A retained command is never obeyed: the broker would deliver it again on every
reconnect and after every restart, so a start would run again by itself. It is
refused (``retained``), counted, and cleared with an empty retained message on
its topic where the broker lets gunctl publish there (by the commands process
for ``set``, here for ``stop``). Under MQTT 5 gunctl subscribes with "retain as
published", so a command published with the retain flag is recognised even
when it arrives live; under MQTT 3.1.1 only the copy the broker keeps is
recognised, on the next (re)connect.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import structlog

from gunctl.config import ServeSettings
from gunctl.daemon import Daemon
from gunctl.mqtt import payloads
from gunctl.mqtt.client import Incoming
from gunctl.mqtt.commands import (
    RETAINED,
    Received,
    named,
    parse_bridge_command,
    parse_device_command,
    parse_stop,
)
from gunctl.mqtt.handoff import Handoff
from gunctl.mqtt.outbox import Outbox, Outgoing, as_json
from gunctl.mqtt.tally import Tally
from gunctl.mqtt.topics import Topics
from gunctl.requests import STOPS, CommandError, CommandId, DeviceCommand

log = structlog.get_logger("gunctl.mqtt")


class Intake:
    def __init__(
        self,
        settings: ServeSettings,
        topics: Topics,
        daemon: Daemon,
        outbox: Outbox,
        received: Handoff[Any],
        *,
        mark: Callable[[str], None],
        changed: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.daemon = daemon
        self.outbox = outbox
        self.received = received  # what the main connection read and the loop has not taken
        self._mark = mark  # a device's state changed
        self._changed = changed  # the counters changed
        self.tally = Tally(daemon.slots, lambda: max(len(outbox), len(received)))
        self._shed_logged = 0
        self.commands = 0

    @property
    def rejected(self) -> dict[str, int]:
        """Refused commands, by reason; those shed unread in a flood included."""
        rejected = self.tally.rejected
        rejected["overloaded"] += self.received.shed
        return rejected

    @property
    def unanswered(self) -> int:
        """Refusals of junk not answered (a flood, or too many a second)."""
        return self.tally.unanswered

    def counted(self, rejected: dict[str, int], refused: dict[str, int], unanswered: int) -> None:
        """What the commands process refused since it last said (:mod:`gunctl.mqtt.setline`)."""
        self.tally.add(rejected, refused, unanswered)
        self._changed()

    # -- what arrives ----------------------------------------------------------------

    def device_command(self, device_id: str, message: Incoming) -> None:
        """A live command on ``<device>/set`` for a gun served here, as the screen passed it."""
        try:
            received = parse_device_command(message.payload)
        except CommandError as exc:  # the screen reads it the same way: never, in practice
            result = self.topics.result(device_id)
            self.refuse(result, device_id, message, exc.command_id, exc.action, exc)
            return
        self._take(device_id, message, received)

    def device_stop(self, device_id: str, message: Incoming) -> None:
        """A message on ``<device>/stop``: whatever it says, it stops (or pain-stops)."""
        payload = message.payload
        if not payload:
            return
        if message.retain:
            self._retained(self.topics.result(device_id), device_id, message)
            return
        self._take(device_id, message, parse_stop(payload))

    def bridge_command(self, message: Incoming, *, stop_topic: bool = False) -> None:
        """A message on a bridge's ``set`` (or, with ``stop_topic``, ``stop``) topic."""
        payload = message.payload
        if not payload:
            return
        result = self.topics.bridge_result
        if message.retain:
            self._retained(result, None, message)
            return
        try:
            received: Received[Any] = (
                parse_stop(payload) if stop_topic else parse_bridge_command(payload)
            )
        except CommandError as exc:
            self.refuse(result, None, message, exc.command_id, exc.action, exc)
            return
        self.commands += 1
        self._changed()
        stopping = self.daemon.stop_all()
        stopping.add_done_callback(functools.partial(self._stopped_all, message, received))

    # -- carrying out and answering -------------------------------------------------------

    def _take(self, device_id: str, message: Incoming, received: Received[Any]) -> None:
        """Hand a parsed command to the gun's lane; answer when it is done."""
        self.commands += 1
        self.tally.taken(device_id)
        self._changed()
        done = self.daemon.submit(device_id, received.command)
        done.add_done_callback(functools.partial(self._answer, device_id, message, received))

    def _answer(
        self,
        device_id: str,
        message: Incoming,
        received: Received[DeviceCommand],
        done: asyncio.Future[dict[str, Any]],
    ) -> None:
        command = received.command
        if done.cancelled():
            return
        exc = done.exception()
        result = self.topics.result(device_id)
        if exc is None:
            log.info("command_done", device=device_id, action=command.action, id=command.id)
            body = payloads.result(
                command.id,
                device=device_id,
                action=command.action,
                ignored=received.ignored,
                **done.result(),
            )
            self._reply(result, message, body, keep=command.action in STOPS)
        else:
            if not isinstance(exc, CommandError):
                log.error(
                    "command_failed", device=device_id, action=command.action, error=repr(exc)
                )
                exc = CommandError("refused", f"internal error: {exc}")
            self.refuse(
                result,
                device_id,
                message,
                command.id,
                command.action,
                exc,
                received.ignored,
                taken=True,
            )
        self._mark(device_id)

    def _stopped_all(
        self, message: Incoming, received: Received[Any], done: asyncio.Future[list[str]]
    ) -> None:
        if done.cancelled():
            return
        stopped = done.result()
        node = self.settings.node_id
        log.warning("stop_all", node=node, stopped=stopped, topic=message.topic)
        body = payloads.result(
            received.command.id,
            device=None,
            action="stop_all",
            stopped=stopped,
            ignored=received.ignored,
        )
        self._reply(self.topics.bridge_result, message, {**body, "node": node}, keep=True)

    def _retained(self, result: str, device_id: str | None, message: Incoming) -> None:
        command_id, action = named(message.payload)
        self.refuse(
            result, device_id, message, command_id, action, CommandError("retained", RETAINED)
        )
        self.outbox.put(Outgoing(message.topic, b"", retain=True))

    # -- refusing ------------------------------------------------------------------

    def refuse(
        self,
        result: str,
        device_id: str | None,
        message: Incoming,
        command_id: str | int | None,
        action: str | None,
        exc: CommandError,
        ignored: tuple[str, ...] = (),
        *,
        taken: bool = False,
    ) -> None:
        """Count a refusal, and answer it if its ration allows (:mod:`gunctl.mqtt.tally`);
        ``taken``: of a command a lane took, not of junk."""
        self.tally.refused(exc, device_id)
        self._changed()
        if taken and device_id is not None:
            answer = action in STOPS or self.tally.answer_refusal(device_id)
        else:
            answer = self.tally.answer_junk()
        if not answer:
            return  # the events and results of real commands come first
        self._answer_refusal(
            result, device_id, message, command_id, action, exc, ignored, taken=taken
        )

    def _answer_refusal(
        self,
        result: str,
        device_id: str | None,
        message: Incoming,
        command_id: CommandId | None,
        action: str | None,
        exc: CommandError,
        ignored: tuple[str, ...] = (),
        *,
        taken: bool = False,
    ) -> None:
        body = payloads.result(
            command_id,
            device=device_id,
            action=action,
            error=exc.message,
            reason=exc.reason,
            ignored=ignored,
        )
        if device_id is None:
            body["node"] = self.settings.node_id
        if taken:  # a person's command: they see why nothing happened, automations too
            self._reply(result, message, body, keep=action in STOPS)
            if device_id is not None:
                event = payloads.refusal_event(device_id, body)
                self.outbox.put(Outgoing(self.topics.event(device_id), as_json(event)))
        else:
            self._reply(result, message, body, qos=0, keep=False)

    def flush_log(self) -> None:
        """Log the refusals not logged one by one, as one line of counts by reason."""
        shed = self.received.shed
        self.tally.flush_log(shed - self._shed_logged)
        self._shed_logged = shed

    def _reply(
        self, topic: str, message: Incoming, body: dict[str, Any], qos: int = 1, *, keep: bool
    ) -> None:
        """Answer on ``topic`` and the response topic; ``keep``: never dropped (a stop's)."""
        text = as_json(body)
        self.outbox.put(Outgoing(topic, text, qos=qos, keep=keep))
        response = self.topics.response(message.properties)
        if response is not None:
            topic, properties = response
            self.outbox.put(Outgoing(topic, text, qos=qos, properties=properties, keep=keep))
