"""Commands in: read, checked, handed to the gun's lane, answered; refusals counted.

Both broker connections feed this one place: the main one (``set`` topics) and
the stop line (``stop`` topics, :mod:`gunctl.mqtt.stopline`). Every command gets
one result on its result topic and, under MQTT 5, on the message's response
topic with its correlation data.

Refusing is cheap, because anyone allowed to publish can send thousands of bad
messages. What the topic and payload alone decide is decided in the main
connection's network thread (:meth:`Intake.screen`), before anything is handed
to the event loop: a live message on a ``set`` topic for a device nobody here
serves, or that is not a command (too large, not JSON, invalid), is counted
there and reaches the event loop only if it is to be answered. The event loop
gets the commands for its guns' lanes, parsed, and whatever else the bridge
reads. Junk is answered at QoS 0 and rationed, every refusal is counted and
logged in aggregate (:mod:`gunctl.mqtt.tally`). Past the hand-off's bound, the
network thread sheds what cannot be a stop unread (``overloaded``,
:mod:`gunctl.mqtt.handoff`). A command a lane took gets its result, refused or
not, at QoS 1.

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
from collections.abc import Callable
from dataclasses import dataclass
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
from gunctl.mqtt.tally import Tally
from gunctl.mqtt.topics import Topics
from gunctl.requests import STOPS, CommandError, CommandId, DeviceCommand

log = structlog.get_logger("gunctl.mqtt")

COUNTED_S = 0.05  # counts from the network thread reach the diagnostics this often at most
RETAINED = (
    "a retained command is never obeyed: the broker would deliver it again on every "
    "reconnect, and it would run again by itself. Publish commands without the retain "
    "flag. gunctl cleared it from the broker where it was allowed to."
)


@dataclass(frozen=True, slots=True)
class Screened:
    """A live message on a device's ``set`` topic, as the network thread found it.

    Either ``received``, a command for a gun served here, parsed, for its lane;
    or ``refusal``, refused and counted there, for the event loop to answer.
    """

    device_id: str
    message: Incoming
    received: Received[DeviceCommand] | None = None
    refusal: CommandError | None = None

    @property
    def urgent(self) -> bool:
        """A stop: never shed (:mod:`gunctl.mqtt.handoff`)."""
        return self.received is not None and self.received.command.action in STOPS


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
        self.tally = Tally(daemon.slots, lambda: max(len(outbox), len(received)))
        self._served = {topics.set(device_id): device_id for device_id in daemon.slots}
        self._shed_logged = 0
        self._counting = False  # counts from the network thread not yet in the diagnostics
        self.commands = 0

    @property
    def rejected(self) -> dict[str, int]:
        """Refused commands, by reason; those shed unread in the network thread included."""
        return {**self.tally.rejected, "overloaded": self.received.shed}

    @property
    def unanswered(self) -> int:
        """Refusals of junk not answered (a flood, or too many a second)."""
        return self.tally.unanswered

    # -- in the main connection's network thread -----------------------------------------

    def screen(self, message: Incoming) -> Incoming | Screened | None:
        """What the event loop is to take of ``message``, if anything; junk stops here.

        A live message on a ``set`` topic is read here: for a gun served here,
        parsed (a :class:`Screened` command for its lane); for anyone else's, or
        if it is not a command, refused and counted, and handed on only to be
        answered. A retained one, and everything that is not on a device's ``set``
        topic, is handed on as it is. Runs in the network thread: it touches only
        the tally, which has a lock, and what does not change while serving.
        """
        device_id = self._served.get(message.topic)
        if device_id is None:
            device_id = self.topics.device_of(message.topic, "set")
            if device_id is None:
                return message
        if message.retain:
            return message  # refused on the event loop, which clears it from the broker
        if not message.payload:
            return None  # a retained command being cleared, by us or by someone
        if device_id not in self.daemon.slots:
            if not self._answers_for(device_id):
                return None  # another daemon answers for it
            refusal = CommandError(
                "unknown_device",
                f"no gunctl instance serves a device {device_id!r} "
                f"(none has published {self.topics.availability(device_id)})",
            )
        else:
            try:
                received = parse_device_command(message.payload)
            except CommandError as exc:
                refusal = exc
            else:
                return Screened(device_id, message, received=received)
        self.tally.refused(refusal, device_id)
        if not self._counting:
            self._counting = True
            self.received.call_soon_threadsafe(self._counted_soon)
        if not self.tally.answer_junk():
            return None
        return Screened(device_id, message, refusal=refusal)

    def _counted_soon(self) -> None:
        asyncio.get_running_loop().call_later(COUNTED_S, self._counted)

    def _counted(self) -> None:
        self._counting = False  # first: a refusal counted from now on calls again
        self._changed()

    # -- what arrives ----------------------------------------------------------------

    def device_command(self, screened: Screened) -> None:
        """A live message on ``<device>/set`` that the network thread passed on."""
        device_id, message = screened.device_id, screened.message
        if screened.received is not None:
            self._take(device_id, message, screened.received)
            return
        assert screened.refusal is not None
        exc = screened.refusal
        command_id, action = exc.command_id, exc.action
        if exc.reason == "unknown_device":  # refused by its topic alone: what did it say?
            command_id, action = _named(message.payload)
        self._answer_refusal(
            self.topics.result(device_id), device_id, message, command_id, action, exc
        )

    def retained_command(self, device_id: str, message: Incoming) -> None:
        """A retained message on ``<device>/set``: never obeyed."""
        if message.payload:  # an empty one clears a retained command, ours or someone's
            self._retained(self.topics.result(device_id), device_id, message)

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
        command_id, action = _named(message.payload)
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
        self.tally.refused(exc, device_id)
        self._changed()
        if not taken and not self.tally.answer_junk():
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


def _named(payload: bytes) -> tuple[CommandId | None, str | None]:
    """The id and action a refused payload gave, for its answer, where it can be read."""
    try:
        command = parse_device_command(payload).command
    except CommandError as exc:
        return exc.command_id, exc.action
    return command.id, command.action
