"""Commands in: read, checked, handed to the gun's lane, answered; refusals counted.

Both broker connections feed this one place: the main one (``set`` topics) and
the stop line (``stop`` topics, :mod:`gunctl.mqtt.stopline`). Every command gets
one result on its result topic and, under MQTT 5, on the message's response
topic with its correlation data.

Refusing is cheap, because anyone allowed to publish can send thousands of bad
messages: a payload that is refused before any gun's lane takes it (not a
command, retained, for a device nobody serves) is parsed once, counted by
reason, and answered at QoS 0, at most :data:`JUNK_ANSWERS_PER_S` a second;
past that, or while more than :data:`BACKLOG` messages wait to go out or to be
read (a flood), such refusals are counted (``unanswered``) but not answered, so
that junk never crowds out the events and results of real commands. Past the
hand-off's bound, the network thread sheds what cannot be a stop unread
(``overloaded``, :mod:`gunctl.mqtt.handoff`). A command a lane took gets its
result, refused or not, at QoS 1. The log gets the
first refusal of a quiet spell in full and then one summary line per
:data:`LOG_EVERY_S` with the count per reason, never one line per message.

A retained command is never obeyed: the broker would deliver it again on every
reconnect and after every restart, so a start would run again by itself. It is
refused (``retained``), counted, and cleared with an empty retained message on
its topic where the broker lets gunctl publish there. Under MQTT 5 gunctl
subscribes with "retain as published", so a command published with the retain
flag is recognised even when it arrives live; under MQTT 3.1.1 only the copy
the broker keeps is recognised, on the next (re)connect.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gunctl.config import ServeSettings
from gunctl.daemon import Daemon
from gunctl.mqtt import payloads
from gunctl.mqtt.client import Incoming
from gunctl.mqtt.commands import (
    Received,
    parse_bridge_command,
    parse_device_command,
    parse_stop,
)
from gunctl.mqtt.handoff import Handoff
from gunctl.mqtt.outbox import Outbox, Outgoing, as_json
from gunctl.mqtt.topics import Topics
from gunctl.requests import REASONS, STOPS, CommandError, DeviceCommand

log = structlog.get_logger("gunctl.mqtt")

LOG_EVERY_S = 10.0  # at most one summary line of refusals this often
BACKLOG = 100  # messages waiting to go out or to be read: past this, junk is not answered
JUNK_ANSWERS_PER_S = 100  # refusals of junk answered a second (in bursts of as many)
RETAINED = (
    "a retained command is never obeyed: the broker would deliver it again on every "
    "reconnect, and it would run again by itself. Publish commands without the retain "
    "flag. gunctl cleared it from the broker where it was allowed to."
)


class Intake:
    def __init__(
        self,
        settings: ServeSettings,
        topics: Topics,
        daemon: Daemon,
        outbox: Outbox,
        received: Handoff,
        *,
        mark: Callable[[str], None],
        changed: Callable[[], None],
        answers_for: Callable[[str], bool],
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.daemon = daemon
        self.outbox = outbox
        self.received = received  # what the main connection read and the loop has not taken
        self._mark = mark  # a device's state changed
        self._changed = changed  # the counters changed
        self._answers_for = answers_for  # whether this daemon answers for an unknown device
        self._rejected: Counter[str] = Counter({reason: 0 for reason in REASONS})
        self._shed_logged = 0
        self._answers_left = float(JUNK_ANSWERS_PER_S)
        self._answers_at = time.monotonic()
        self.commands = 0
        # per gun served (never per id a stranger sends to, which would grow without bound)
        self.by_device: dict[str, Counter[str]] = {
            device_id: Counter(commands=0, refused=0) for device_id in daemon.slots
        }
        self.unanswered = 0  # refusals not answered because the outbox was backed up
        self._unlogged: Counter[str] = Counter()
        self._logged_at = -LOG_EVERY_S

    @property
    def rejected(self) -> dict[str, int]:
        """Refused commands, by reason; those shed unread in the network thread included."""
        return {**self._rejected, "overloaded": self.received.shed}

    def _answer_junk(self) -> bool:
        """Whether a refusal of junk is answered: not in a flood, and not too many a second."""
        now = time.monotonic()
        left = self._answers_left + (now - self._answers_at) * JUNK_ANSWERS_PER_S
        self._answers_left, self._answers_at = min(float(JUNK_ANSWERS_PER_S), left), now
        if self._answers_left < 1 or len(self.outbox) > BACKLOG or len(self.received) > BACKLOG:
            return False
        self._answers_left -= 1
        return True

    # -- what arrives ----------------------------------------------------------------

    def device_command(self, device_id: str, message: Incoming) -> None:
        """A message on ``<device>/set``."""
        payload = message.payload
        if not payload:
            return  # a retained command being cleared, by us or by someone
        if device_id not in self.daemon.slots:
            self._stranger(device_id, message)
            return
        result = self.topics.result(device_id)
        if message.retain:
            self._retained(result, device_id, message)
            return
        try:
            received = parse_device_command(payload)
        except CommandError as exc:
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
        self.by_device[device_id]["commands"] += 1
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

    def _stranger(self, device_id: str, message: Incoming) -> None:
        """A command for a device this daemon does not serve: answered by one daemon only."""
        if not self._answers_for(device_id):
            return
        action: str | None
        try:
            command = parse_device_command(message.payload).command
            command_id, action = command.id, command.action
        except CommandError as exc:
            command_id, action = exc.command_id, exc.action
        error = CommandError(
            "unknown_device",
            f"no gunctl instance serves a device {device_id!r} "
            f"(none has published {self.topics.availability(device_id)})",
        )
        self.refuse(self.topics.result(device_id), device_id, message, command_id, action, error)

    def _retained(self, result: str, device_id: str | None, message: Incoming) -> None:
        command_id: str | int | None = None
        action: str | None = None
        try:
            command = parse_device_command(message.payload).command
            command_id, action = command.id, command.action
        except CommandError as exc:
            command_id, action = exc.command_id, exc.action
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
        """Count and answer a refusal; ``taken``: of a command a lane took, not of junk."""
        self._count(exc, device_id)
        if not taken and not self._answer_junk():
            self.unanswered += 1  # the events and results of real commands come first
            return
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

    def _count(self, exc: CommandError, device_id: str | None) -> None:
        self._rejected[exc.reason] += 1
        if device_id in self.by_device:
            self.by_device[device_id]["refused"] += 1
        self._changed()
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            self.flush_log()
            log.warning("command_rejected", device=device_id, reason=exc.reason, error=exc.message)
        else:
            self._unlogged[exc.reason] += 1

    def flush_log(self) -> None:
        """Log the refusals not logged one by one, as one line of counts by reason."""
        shed = self.received.shed
        if shed > self._shed_logged:
            self._unlogged["overloaded"] += shed - self._shed_logged
            self._shed_logged = shed
        if self._unlogged:
            log.warning("commands_rejected", by_reason=dict(sorted(self._unlogged.items())))
            self._unlogged.clear()

    def _reply(
        self, topic: str, message: Incoming, body: dict[str, Any], qos: int = 1, *, keep: bool
    ) -> None:
        """Answer on ``topic`` and the response topic; ``keep``: never dropped (a stop's)."""
        text = as_json(body)
        self.outbox.put(Outgoing(topic, text, qos=qos, keep=keep))
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
        self.outbox.put(Outgoing(response, text, qos=qos, properties=reply, keep=keep))

    def _safe_response_topic(self, topic: str) -> bool:
        """Not a wildcard, and not under gunctl's own or Home Assistant's topics."""
        if not topic or len(topic) > 256 or "+" in topic or "#" in topic:
            return False
        owned = (f"{self.topics.base}/", f"{self.topics.discovery_prefix}/")
        return not topic.startswith(owned)
