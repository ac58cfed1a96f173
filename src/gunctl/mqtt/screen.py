"""The commands process: the connection that reads the ``set`` topics, and the screen, alone.

Anyone allowed to publish can flood the ``set`` topics, so the connection that
subscribes to them runs in a process of its own (``python -m
gunctl.mqtt.screen``, started and watched by
:class:`gunctl.mqtt.setline.SetLine`): in the daemon's process, the time spent
reading each message held the GIL that the guns' control loops need. It
screens what it reads:

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

The connection is gmqtt's, on an asyncio loop: it reads the socket in large
chunks and takes every message in them in one go, 35 to 38 µs of CPU a
message here in a flood against 86 to 127 µs for paho (the daemon's kind of
client), which reads each message with a wait for the socket and three reads
of its own and builds a table of MQTT 5 property names for each
(BENCHMARKS.md, "A flood, then a stop"). The screen runs in the loop's
callbacks.

If the daemon falls behind, what waits for it is bounded (:data:`WAITING`):
past the bound, a stop is still queued, up to twice the bound, and anything
else is shed, counted as ``overloaded``. The daemon's guns are fixed by its
configuration, so they are sent once, in the first line on stdin
(:class:`Setup`). It runs :data:`NICENESS` steps below the daemon's priority.

The process lives as long as its connection: it ends when the daemon does (at
the end of stdin, as the daemon closes it or dies, or by ``PR_SET_PDEATHSIG``
if the daemon dies first), when its first connection fails (status 1) and
when its connection is lost (status 0); the daemon starts another after a
back-off, one way back for every case.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
from collections import deque
from typing import Any

import gmqtt
import structlog
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError
from pydantic import BaseModel, ConfigDict, ValidationError

from gunctl.config import MqttSettings
from gunctl.logs import configure
from gunctl.mqtt import payloads
from gunctl.mqtt.client import TIMEOUT_S
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
# Steps of niceness below the daemon: when the cores are short (a flood, with the broker and
# the publishers busy too), the guns' control loops come first and the junk waits.
# bench/mqtt_flood.py with the daemon at niceness 0, in groups of 10 trials (8 with this, 6
# without): the median trial's worst lateness 5 to 9 ms with it, 6 to 12 ms without; a
# group's worst over one period (20 ms) in 2 of 8 with it, 5 of 6 without; the same rate
# of refusals.
NICENESS = 5


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
    """What the connection hands the daemon, written to stdout by a thread of its own.

    The writer takes everything waiting at once, so a flood costs a write (and a
    wake-up of the daemon) per batch, not per message; a daemon that reads
    slowly blocks only this writer, never the connection's loop, which sheds
    past the bound instead.
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
        """On the connection's loop: queue a command for the daemon, or shed it past the bound."""
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
        """On the connection's loop: a count moved; the daemon hears of it within COUNTS_EVERY_S."""
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
    """Reads what the connection receives, on its loop (see the module)."""

    def __init__(self, setup: Setup, client: gmqtt.Client) -> None:
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

    def subscriptions(self) -> list[gmqtt.Subscription]:
        """Under MQTT 5, the commands' retain flag as published, so that a retained command
        is recognised even when it arrives live."""
        t, v5 = self.topics, self.setup.mqtt.protocol == "5"
        if self.setup.mqtt.answer_unknown_devices:
            # <base>/+/set matches <base>/bridge/set too: once is enough
            commands, others = [t.any_set, t.bridge_set], [t.any_availability, t.any_bridge_state]
        else:
            commands, others = [*self._served, *self._bridge], []
        return [
            *(gmqtt.Subscription(c, qos=SET_QOS, retain_as_published=v5) for c in commands),
            *(gmqtt.Subscription(o, qos=1) for o in others),
        ]

    def on_connect(self, client: gmqtt.Client, *_: Any) -> None:
        client.subscribe(self.subscriptions())

    def on_subscribe(self, client: gmqtt.Client, mid: int, codes: tuple[int, ...], *_: Any) -> None:
        """Subscribed: from now on nothing published on a ``set`` topic is missed."""
        failed = [f"0x{code:02x}" for code in codes if code >= 0x80]
        if failed:  # the broker's ACL: what it allows is read all the same
            log.warning("broker_refused", refused=f"subscriptions: {', '.join(failed)}")
        self.out.line({"connected": True})

    def on_message(
        self, client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: Any
    ) -> int:
        try:
            self._screen(topic, payload, bool(properties.get("retain")), properties)
        except Exception:  # one message, not the connection
            log.exception("message_failed", topic=repr(topic[:200]))
        return 0

    def _screen(self, topic: str, payload: bytes, retain: bool, properties: dict[str, Any]) -> None:
        t = self.topics
        bridge_result = self._bridge.get(topic)
        device_id = self._served.get(topic)
        if bridge_result is None and device_id is None:
            device_id = t.device_of(topic, "set")
            if device_id is None:
                self._neighbour(topic, payload)
                return
            if payload and not retain and not self._answers_for(device_id):
                return  # another daemon answers for it
        if not payload:
            return  # a retained command being cleared, by us or by someone
        result = bridge_result or t.result(device_id)  # type: ignore[arg-type]
        if retain:
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
        line: dict[str, Any] = {"topic": topic, "payload": payload.decode()}
        response = t.reply_topic(_first(properties, "response_topic"))
        if response is not None:
            line["response"] = response
            correlation = _first(properties, "correlation_data")
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
        properties: dict[str, Any],
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
        response = self.topics.reply_topic(_first(properties, "response_topic"))
        if response is not None:
            correlation = _first(properties, "correlation_data")
            extra = {} if correlation is None else {"correlation_data": correlation}
            self.client.publish(response, text, qos=0, **extra)


def _first(properties: dict[str, Any], name: str) -> Any:
    """A property of a message as gmqtt gives it (a list of its values), or None."""
    values = properties.get(name)
    return values[0] if values else None


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def _die_with_parent() -> None:
    """Have the kernel end this process when the daemon's thread that started it ends.

    Linux only, and cheap; elsewhere (and as well) the end of stdin ends it.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class _EndOfInput(asyncio.Protocol):
    """Stdin, read for its end: the daemon closed it, or died."""

    def __init__(self, ended: asyncio.Event) -> None:
        self._ended = ended

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended.set()


async def serve(setup: Setup) -> int:
    """Screen what the connection reads until stdin ends (0), the first connection
    fails (1) or the connection is lost (0); the exit status."""
    mqtt = setup.mqtt
    connected, ended, lost = asyncio.Event(), asyncio.Event(), asyncio.Event()
    # gmqtt logs through the standard library, each lost connection as a warning in its
    # own words; what matters this process says itself, in gunctl's log (set_line_*)
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    client = gmqtt.Client(setup.identifier, logger=logging.getLogger("gmqtt.client"))
    # Not one attempt to connect again (with 0, gmqtt still makes one): the process ends
    # with its connection, and the daemon starts another.
    client.set_config({"reconnect_retries": -2})
    screen = Screen(setup, client)

    def disconnected(*_: Any) -> None:
        if connected.is_set() and not ended.is_set():  # not a first connection refused
            log.warning("set_line_lost", host=mqtt.host, port=mqtt.port)
            screen.out.line({"connected": False})
        lost.set()

    client.on_connect = screen.on_connect
    client.on_subscribe = screen.on_subscribe
    client.on_message = screen.on_message
    client.on_disconnect = disconnected
    if mqtt.user is not None:
        password = mqtt.password()
        client.set_auth_credentials(mqtt.user, password and password.get_secret_value())
    try:
        tls = ssl.create_default_context(cafile=str(mqtt.tls_ca)) if mqtt.tls_ca else False
        async with asyncio.timeout(TIMEOUT_S):
            await client.connect(
                mqtt.host,
                mqtt.port,
                ssl=tls,
                keepalive=mqtt.keepalive_s,
                version=MQTTv50 if mqtt.protocol == "5" else MQTTv311,
            )
    except (OSError, TimeoutError, MQTTConnectError) as exc:
        # refused, unreachable, a name, TLS or password failure: the daemon starts another
        log.error("set_line_connect_failed", host=mqtt.host, port=mqtt.port, error=str(exc))
        return 1
    connected.set()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: _EndOfInput(ended), sys.stdin)
    threading.Thread(target=screen.out.write, name="to daemon", daemon=True).start()
    log.info("set_line_started", node=setup.node_id, devices=len(setup.devices))
    waits = [asyncio.ensure_future(e.wait()) for e in (ended, lost)]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    if ended.is_set() and not lost.is_set():
        await client.disconnect()
    screen.tally.flush_log()
    return 0


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the daemon stops, and closes stdin
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the daemon died before the line above
        return
    os.nice(NICENESS)
    try:
        setup = Setup.model_validate_json(sys.stdin.buffer.readline() or b"{}")
    except ValidationError:
        sys.exit(
            "gunctl.mqtt.screen is started by gunctl serve, which gives it its settings "
            "as the first line on its stdin; that line was not valid"
        )
    configure(json=setup.log_json, level=setup.log_level)
    sys.exit(asyncio.run(serve(setup)))


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
