"""The commands process: the connection that reads the ``set`` topics, and the screen, alone.

Anyone allowed to publish can flood the ``set`` topics. paho spends 80 to
112 µs of Python on every message it reads, whatever becomes of it, and in
the daemon's process that time held the GIL that the guns' control loops
need: the daemon could refuse about 8,000 junk messages a second, against
13,800 for the same connection alone (BENCHMARKS.md, "A flood, then a stop").
So the connection that subscribes to the ``set`` topics runs here, in a
process of its own (``python -m gunctl.mqtt.screen``, started and watched by
:class:`gunctl.mqtt.setline.SetLine`), and screens what it reads:

- a live command for one of the daemon's guns, or for the bridge, that parses
  is handed to the daemon, in the order read, as one JSON line on stdout;
- anything else is refused here and counted (:class:`~gunctl.mqtt.tally.Tally`):
  a device nobody here serves (answered only by the daemon that answers for
  strangers, :mod:`gunctl.mqtt.neighbours`, fed by this connection's own
  subscriptions to availability and bridge state), a payload that is not a
  command (too large, not JSON, invalid), and a retained command, which is
  also cleared from the broker. Refusals are answered from here, at QoS 0 and
  rationed as in the daemon, on this connection, so that they never wait
  behind, or crowd out, the daemon's events and results;
- the counts go to the daemon every :data:`COUNTS_EVERY_S` while they move,
  for its diagnostics, and ahead of any command, so that the daemon takes no
  command before the refusals read ahead of it are counted; the log lines (in
  aggregate) are written here.

If the daemon falls behind, what waits for it is bounded (:data:`WAITING`):
past the bound, a stop is still queued, up to twice the bound, and anything
else is shed, counted as ``overloaded``. The daemon's guns are fixed by its
configuration, so they are sent once, in the first line on stdin
(:class:`Setup`). The process ends when the daemon does: at the end of stdin
(the daemon closed it, or died), or by ``PR_SET_PDEATHSIG`` if the daemon dies
first. paho connects again by itself
after a lost connection; a first connection that fails ends the process, and
the daemon starts another after a back-off.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Any

import paho.mqtt.client as paho
import structlog
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, ValidationError

from gunctl.config import MqttSettings
from gunctl.logs import configure
from gunctl.mqtt import payloads
from gunctl.mqtt.client import acknowledge_now, connect, paho_client, subscription
from gunctl.mqtt.commands import (
    RETAINED,
    named,
    parse_bridge_command,
    parse_device_command,
)
from gunctl.mqtt.neighbours import Neighbours
from gunctl.mqtt.outbox import as_json
from gunctl.mqtt.tally import LOG_EVERY_S, Tally
from gunctl.mqtt.topics import Topics
from gunctl.requests import STOPS, CommandError

log = structlog.get_logger("gunctl.mqtt")

COUNTS_EVERY_S = 0.02  # counts reach the daemon this often at most, while they move
# Commands waiting for the daemon before any but a stop is shed (stops up to twice as
# many). Far more than people send; and a stop behind them cancels every one still
# waiting for its gun in one go on the daemon's event loop (gunctl.lane), which for
# 1,000 took 6 to 10 ms on a loaded machine.
WAITING = 500
# What the set topics are read at. At QoS 1 a broker hands a client at most a few
# messages it has not acknowledged (Mosquitto: 20) and waits: read in a flood, they
# came at the pace of the round trips, and the rest was dropped from the broker's
# queue. QoS 1 gains this connection nothing else: its session is clean, so nothing
# is delivered again after a reconnect, and over one TCP connection nothing is lost
# or reordered either way. What senders publish at QoS 1 the broker still takes at 1.
SET_QOS = 0
PR_SET_PDEATHSIG = 1
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 15  # paho's back-off after a lost connection


class Setup(BaseModel):
    """What the daemon tells the commands process, once, as the first line on its stdin."""

    model_config = ConfigDict(extra="forbid")

    mqtt: MqttSettings
    node_id: str
    identifier: str  # the MQTT client id
    instance: str  # the daemon's instance token (:mod:`gunctl.mqtt.neighbours`)
    devices: list[str]  # the daemon's guns
    log_json: bool = True
    log_level: str = "info"


class ToDaemon:
    """What the network thread hands the daemon, written to stdout by a thread of its own.

    The writer takes everything waiting at once, so a flood costs a write (and a
    wake-up of the daemon) per batch, not per message; a daemon that reads
    slowly blocks only this writer, never the network thread, which sheds past
    the bound instead.
    """

    def __init__(self, tally: Tally, devices: list[str], neighbours: Neighbours) -> None:
        self._tally = tally
        self._devices = devices
        self._neighbours = neighbours
        self._queue: deque[bytes] = deque()
        self._wake = threading.Condition()
        self._counts_moved = False
        self.most_waiting = 0

    def command(self, line: dict[str, Any], urgent: bool, device_id: str | None) -> None:
        """In the network thread: queue a command for the daemon, or shed it past the bound."""
        with self._wake:
            waiting = len(self._queue)
            if waiting < WAITING or (waiting < 2 * WAITING and urgent):
                self._queue.append(_line(line))
                self.most_waiting = max(self.most_waiting, waiting + 1)
                self._wake.notify()
                return
        overloaded = CommandError("overloaded", "shed in a flood: the daemon is behind")
        self._tally.refused(overloaded, device_id)
        self.counted()

    def counted(self) -> None:
        """In the network thread: a count moved; the daemon hears of it within COUNTS_EVERY_S."""
        with self._wake:
            if not self._counts_moved:  # one wake-up per report, not one per refusal
                self._counts_moved = True
                self._wake.notify()

    def line(self, line: dict[str, Any]) -> None:
        """Anything else for the daemon, at once (its connections)."""
        with self._wake:
            self._queue.append(_line(line))
            self._wake.notify()

    def write(self) -> None:
        """The writer thread: until the daemon closes its end."""
        out = sys.stdout.buffer.fileno()
        counted_at = flushed_at = 0.0
        while True:
            with self._wake:
                due = counted_at + COUNTS_EVERY_S - time.monotonic()
                if not self._queue and not (self._counts_moved and due <= 0):
                    self._wake.wait(due if self._counts_moved else LOG_EVERY_S)
                lines = list(self._queue)
                self._queue.clear()
                now = time.monotonic()
                # Ahead of the commands that come with them, whenever they are due: the
                # daemon then takes no command before the refusals read ahead of it.
                if self._counts_moved and (lines or now >= counted_at + COUNTS_EVERY_S):
                    self._counts_moved, counted_at = False, now
                    lines.insert(0, _line({"counts": self._counts()}))
            if now - flushed_at >= LOG_EVERY_S:
                flushed_at = now
                self._tally.flush_log()
            data = b"".join(lines)
            try:
                while data:
                    data = data[os.write(out, data) :]
            except BrokenPipeError:  # the daemon stopped reading: it is ending, and so are we
                return

    def _counts(self) -> dict[str, Any]:
        """Everything counted since this process started (the daemon adds up the changes),
        and what its neighbours keep and forgot (the daemon shows it as it is)."""
        tally = self._tally
        return {
            "rejected": tally.rejected,
            "refused": {d: tally.of(d)["refused"] for d in self._devices},
            "unanswered": tally.unanswered,
            "most_waiting": self.most_waiting,
            "neighbours": self._neighbours.stats(),
        }


class Screen:
    """Reads what the connection receives, in paho's network thread (see the module)."""

    def __init__(self, setup: Setup, client: paho.Client) -> None:
        self.setup = setup
        self.client = client
        mqtt = setup.mqtt
        self.topics = Topics(setup.node_id, mqtt.base_topic, mqtt.discovery_prefix)
        self.neighbours = Neighbours(setup.node_id, setup.instance)
        self.tally = Tally(setup.devices, lambda: 0)  # its answers wait behind nothing else
        self.out = ToDaemon(self.tally, setup.devices, self.neighbours)
        self._served = {self.topics.set(d): d for d in setup.devices}
        t = self.topics
        self._bridge = {t.bridge_set: t.bridge_result, t.bridge_set_all: t.bridge_result}

    def subscriptions(self) -> list[tuple[str, Any]]:
        t, mqtt = self.topics, self.setup.mqtt
        if mqtt.answer_unknown_devices:
            # <base>/+/set matches <base>/bridge/set too: once is enough
            commands, others = [t.any_set, t.bridge_set], [t.any_availability, t.any_bridge_state]
        else:
            commands, others = [*self._served, *self._bridge], []
        return [
            *(subscription(mqtt, c, qos=SET_QOS, commands=True) for c in commands),
            *(subscription(mqtt, o) for o in others),
        ]

    def on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, code: ReasonCode, *_: Any
    ) -> None:
        if code.is_failure:
            log.error("set_line_refused", code=str(code))
            return
        client.subscribe(self.subscriptions())

    def on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, codes: list[ReasonCode], *_: Any
    ) -> None:
        """Subscribed: from now on nothing published on a ``set`` topic is missed."""
        failed = [str(code) for code in codes if code.is_failure]
        if failed:  # the broker's ACL: what it allows is read all the same
            log.warning("broker_refused", refused=f"subscriptions: {', '.join(failed)}")
        self.out.line({"connected": True})

    def on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, code: ReasonCode, *_: Any
    ) -> None:
        if code.is_failure:
            log.warning("set_line_lost", code=str(code))
        self.out.line({"connected": False})

    def on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        acknowledge_now(client)
        try:
            self._screen(message)
        except Exception:  # an error here would end paho's thread, and the connection
            log.exception("message_failed", topic=repr(message._topic[:200]))

    def _screen(self, message: paho.MQTTMessage) -> None:
        topic, payload, t = message.topic, bytes(message.payload), self.topics
        bridge_result = self._bridge.get(topic)
        device_id = self._served.get(topic)
        if bridge_result is None and device_id is None:
            device_id = t.device_of(topic, "set")
            if device_id is None:
                self._neighbour(topic, payload)
                return
            if payload and not message.retain and not self._answers_for(device_id):
                return  # another daemon answers for it
        if not payload:
            return  # a retained command being cleared, by us or by someone
        result = bridge_result or t.result(device_id)  # type: ignore[arg-type]
        properties = getattr(message, "properties", None)
        if message.retain:
            self._refuse(result, device_id, properties, CommandError("retained", RETAINED), payload)
            self.client.publish(topic, b"", qos=1, retain=True)
            return
        action: str
        try:
            if bridge_result is not None:
                action = parse_bridge_command(payload).command.action
            elif device_id in self._served.values():
                action = parse_device_command(payload).command.action
            else:
                unknown = CommandError(
                    "unknown_device",
                    f"no gunctl instance serves a device {device_id!r} "
                    f"(none has published {t.availability(device_id)})",  # type: ignore[arg-type]
                )
                self._refuse(result, device_id, properties, unknown, payload)
                return
        except CommandError as exc:
            self._refuse(result, device_id, properties, exc)
            return
        response = t.response(properties)
        line: dict[str, Any] = {"topic": topic, "payload": payload.decode()}
        if response is not None:
            line["response"] = response[0]
            correlation = getattr(response[1], "CorrelationData", None)
            if correlation is not None:
                line["correlation"] = bytes(correlation).hex()
        self.out.command(line, urgent=action in (*STOPS, "stop_all"), device_id=device_id)

    def _neighbour(self, topic: str, payload: bytes) -> None:
        """Another daemon's retained availability or bridge state: who answers for strangers."""
        if (device := self.topics.device_of(topic, "availability")) is not None:
            self.neighbours.availability(device, payload)
        elif (node := self.topics.node_of(topic, "state")) is not None:
            self.neighbours.bridge_state(node, payload)
        self.out.counted()  # what they keep is in the counts

    def _answers_for(self, device_id: str) -> bool:
        return self.setup.mqtt.answer_unknown_devices and self.neighbours.answers_for(device_id)

    def _refuse(
        self,
        result: str,
        device_id: str | None,
        properties: Any,
        exc: CommandError,
        unread: bytes | None = None,
    ) -> None:
        """Count a refusal; answer it at QoS 0 if the ration allows (:mod:`gunctl.mqtt.tally`).

        ``unread``: the payload of a message refused without parsing it (a stranger's, a
        retained one), parsed for its id and action only to answer it: in a flood, few are.
        """
        self.tally.refused(exc, device_id)
        self.out.counted()
        if not self.tally.answer_junk():
            return
        command_id, action = named(unread) if unread is not None else (exc.command_id, exc.action)
        body = payloads.result(
            command_id, device=device_id, action=action, error=exc.message, reason=exc.reason
        )
        if result == self.topics.bridge_result:
            body["node"] = self.setup.node_id
        text = as_json(body)
        self.client.publish(result, text, qos=0)
        response = self.topics.response(properties)
        if response is not None:
            self.client.publish(response[0], text, qos=0, properties=response[1])


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def _die_with_parent() -> None:
    """Have the kernel end this process when the daemon's thread that started it ends.

    Linux only, and cheap; elsewhere (and as well) the end of stdin ends it.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the daemon stops, and closes stdin
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the daemon died before the line above
        return
    try:
        setup = Setup.model_validate_json(sys.stdin.buffer.readline() or b"{}")
    except ValidationError:
        sys.exit(
            "gunctl.mqtt.screen is started by gunctl serve, which gives it its settings "
            "as the first line on its stdin; that line was not valid"
        )
    configure(json=setup.log_json, level=setup.log_level)
    client = paho_client(setup.mqtt, setup.identifier, setup.mqtt.password(), reconnect=True)
    screen = Screen(setup, client)
    client.on_connect = screen.on_connect
    client.on_message = screen.on_message
    client.on_disconnect = screen.on_disconnect
    client.on_subscribe = screen.on_subscribe
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    try:
        connect(client, setup.mqtt)
    except OSError as exc:  # refused, unreachable, a name or TLS failure: the daemon starts another
        log.error(
            "set_line_connect_failed", host=setup.mqtt.host, port=setup.mqtt.port, error=str(exc)
        )
        sys.exit(1)
    threading.Thread(target=screen.out.write, name="to daemon", daemon=True).start()
    client.loop_start()
    log.info("set_line_started", node=setup.node_id, devices=len(setup.devices))
    sys.stdin.buffer.read()  # nothing more comes: the end of stdin is the daemon gone
    client.disconnect()
    client.loop_stop()
    screen.tally.flush_log()


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
