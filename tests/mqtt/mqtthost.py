"""Test support for the MQTT tests: a private Mosquitto, a watcher client, the daemon in-process.

Each module starts its own ``mosquitto`` on a free port with a config file
written to a temporary folder (never the system broker on 1883), and kills it
at the end. The daemon runs in the test's event loop with simulated guns on a
fast clock and a one-step protocol from a user profiles folder, so a whole
session takes about a second of wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import io
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from gunctl.config import ServeSettings
from gunctl.control.supervisor import Supervisor
from gunctl.logs import configure
from gunctl.mqtt.service import Service
from gunctl.mqtt.topics import Topics
from gunctl.profiles.loader import load_catalogue
from gunctl.store.history import History

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
TIME_SCALE = 40.0
SIM_SPEC = "basic-5level"  # keepalive budget of 2 s: room for scheduling jitter on a fast clock

# One hold on the gluteus maximus (left) and one on the piriformis (left): the
# shortest holds the muscles allow, so that a session is short on a fast clock.
TINY = """\
name: tiny
title: Two short holds
description: A test routine, one hold on the gluteus maximus and one on the piriformis.
steps:
  - muscle: gluteus-maximus
    side: left
    head: ball
    intensity: 0.5
    hold_s: 30
    ramp_s: 1
    rest_s: 0
    placement: Middle of the buttock.
  - muscle: piriformis
    side: left
    head: bullet
    intensity: 0.3
    hold_s: 30
    ramp_s: 1
    rest_s: 0
    placement: Deep mid-buttock.
"""

# A single long, gentle piriformis hold: to check the intensity under the caps.
PIRI = """\
name: piri
title: One piriformis hold
description: A test routine on the piriformis only.
steps:
  - muscle: piriformis
    side: left
    head: bullet
    intensity: 0.35
    hold_s: 60
    ramp_s: 1
    rest_s: 0
    placement: Deep mid-buttock.
"""


# One long hold on the gluteus maximus (left): about five seconds of wall time at TIME_SCALE.
LONG = """\
name: long
title: One long hold
description: A test routine, one long hold on the gluteus maximus.
steps:
  - muscle: gluteus-maximus
    side: left
    head: ball
    intensity: 0.5
    hold_s: 90
    ramp_s: 2
    rest_s: 0
    placement: Middle of the buttock.
"""


def password_file(directory: Path, users: tuple[str, ...]) -> Path:
    """A Mosquitto password file where each user's password is ``<user>-pw``."""
    passwords = directory / "passwords"
    for n, user in enumerate(users):
        create = ["-c"] if n == 0 else []
        subprocess.run(
            ["mosquitto_passwd", *create, "-b", str(passwords), user, f"{user}-pw"], check=True
        )
    return passwords


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    """A private Mosquitto on 127.0.0.1:``port``; ``kill`` and ``start`` again on the same port."""

    directory: Path
    port: int
    extra: str = ""  # more configuration lines (TLS, passwords, ACL)
    anonymous: bool = True
    persistent: bool = False  # keep retained messages across a stop() and start()
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def config(self) -> Path:
        return self.directory / "mosquitto.conf"

    def start(self) -> None:
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # run as whoever runs the tests: as root, mosquitto would switch to a user
            # that cannot read the files in the temporary folder
            f"user {getpass.getuser()}\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            + (
                f"persistence true\npersistence_location {self.directory}/\n"
                if self.persistent
                else "persistence false\n"
            )
            + f"log_dest file {self.directory / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\nlog_type notice\n" + self.extra
        )
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited: {(self.directory / 'mosquitto.log').read_text()}"
                )
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        """End it cleanly: a persistent broker writes its retained messages to disk."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None


def the_gun(service: Service) -> tuple[str, Supervisor]:
    """The id and the Supervisor of a daemon's one gun, connected."""
    ((device_id, slot),) = service.daemon.slots.items()
    assert slot.device is not None, f"{device_id} is not connected"
    return device_id, slot.device.supervisor


@contextlib.asynccontextmanager
async def running(settings: ServeSettings, data_dir: Path | None = None) -> AsyncIterator[Service]:
    """The daemon and bridge of ``gunctl serve``, in this event loop."""
    history = (
        History(data_dir / "history.sqlite3", diary=settings.diary)
        if data_dir is not None
        else None
    )
    service = Service(settings, history=history, catalogue=load_catalogue())
    await service.start()
    try:
        await service.daemon.wait_connected(10)
        await asyncio.wait_for(service.bridge.connected.wait(), 10)
        await asyncio.wait_for(service.bridge.setline.connected.wait(), 10)
        yield service
    finally:
        await service.stop()


async def logged_at_start(settings: ServeSettings, level: str) -> list[dict[str, Any]]:
    """What ``gunctl serve`` logs at ``level`` and up while it starts and stops, as dicts."""
    service = Service(settings, catalogue=load_catalogue())
    lines = io.StringIO()
    configure(json=True, level=level, stream=lines)
    try:
        await service.start()
        await service.stop()
    finally:
        configure(json=True, level="error")
    return [json.loads(line) for line in lines.getvalue().splitlines()]


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool
    properties: Any = None
    qos: int = 0

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Watcher:
    """A plain MQTT client that records everything it sees and publishes commands."""

    client: aiomqtt.Client
    topics: Topics
    seen: list[Seen] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def on(self, topic: str) -> list[Seen]:
        return [m for m in self.seen if m.topic == topic]

    async def until(
        self, match: Callable[[Seen], object], timeout: float = 10.0, *, since: int = 0
    ) -> Seen:
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                for message in self.seen[since:]:
                    if match(message):
                        return message
                await self._arrived.wait()

    async def state(
        self, device_id: str, match: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first retained state of ``device_id`` for which ``match`` holds."""
        topic = self.topics.state(device_id)

        def wanted(m: Seen) -> bool:
            return m.topic == topic and bool(m.payload) and match(m.json())

        return dict((await self.until(wanted, timeout)).json())

    async def first(self, topic: str, since: int = 0, timeout: float = 10.0) -> Seen:
        """The first message on ``topic`` from message number ``since`` on."""
        return await self.until(lambda m: m.topic == topic, timeout, since=since)

    async def cleared(self, topic: str, since: int = 0) -> None:
        """Wait for an empty (retained) payload on ``topic``: the topic was cleared."""
        await self.until(lambda m: m.topic == topic and m.payload == b"", since=since)

    def events(self, device_id: str) -> list[str]:
        return [m.json()["type"] for m in self.on(self.topics.event(device_id))]

    async def confirm_heads(self, device_id: str, timeout: float = 30.0) -> str:
        """Confirm every head change over MQTT until the session ends; return how it ended."""
        topic = self.topics.event(device_id)
        kinds = ("head_change_required", "session_completed", "session_aborted")

        def wanted(m: Seen) -> bool:
            return m.topic == topic and m.json()["type"] in kinds

        since = 0
        async with asyncio.timeout(timeout):
            while True:
                message = await self.until(wanted, timeout, since=since)
                since = self.seen.index(message) + 1
                kind = str(message.json()["type"])
                if kind != "head_change_required":
                    return kind
                result = await self.command(device_id, {"action": "confirm_head"})
                assert result["ok"], result

    async def command(
        self, device_id: str, body: dict[str, Any] | bytes | str, timeout: float = 20.0
    ) -> dict[str, Any]:
        """Publish to ``<device>/set`` and return the result with the same id."""
        since = len(self.seen)
        if isinstance(body, dict):
            body = {"id": f"c{since}", **body}
            payload: bytes | str = json.dumps(body)
            wanted = body["id"]
        else:
            payload, wanted = body, None
        await self.client.publish(self.topics.set(device_id), payload, qos=1)
        result = await self.until(
            lambda m: m.topic == self.topics.result(device_id) and m.json().get("id") == wanted,
            timeout,
            since=since,
        )
        return dict(result.json())

    async def _pump(self) -> None:
        async for message in self.client.messages:
            payload = (
                message.payload
                if isinstance(message.payload, bytes)
                else str(message.payload).encode()
            )
            self.seen.append(
                Seen(message.topic.value, payload, message.retain, message.properties, message.qos)
            )
            async with self._arrived:
                self._arrived.notify_all()


@contextlib.asynccontextmanager
async def watching(broker: Broker, topics: Topics, *patterns: str) -> AsyncIterator[Watcher]:
    async with aiomqtt.Client(
        broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        watcher = Watcher(client, topics)
        pump = asyncio.create_task(watcher._pump())
        for pattern in patterns or ("#",):
            await client.subscribe(pattern, qos=1)
        try:
            yield watcher
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


def is_event(watcher: Watcher, device_id: str, kind: str) -> Callable[[Seen], bool]:
    topic = watcher.topics.event(device_id)
    return lambda m: m.topic == topic and m.json().get("type") == kind
