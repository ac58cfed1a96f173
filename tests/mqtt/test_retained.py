"""Retained commands are never obeyed; only trusted clients may publish commands.

A start published with the retain flag is refused (``retained``), counted and
cleared where the broker lets the daemon clear it; where the ACL does not
(docs/mosquitto.acl gives the daemons no write access to command topics), it
stays on the broker and is refused again after a daemon restart and after a
broker restart, and no session ever starts by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest
from mqtthost import Broker, free_port, password_file, running, watching

from gunctl.config import ServeSettings
from gunctl.mqtt.topics import Topics
from gunctl.store.history import History

pytestmark = pytest.mark.mqtt

ACL = Path(__file__).parents[2] / "docs" / "mosquitto.acl"
Settings = Callable[..., ServeSettings]
START = json.dumps({"action": "start", "protocol": "long", "id": "kept"})
USERS = ("gunctl", "controller", "homeassistant", "stranger")  # stranger: not in the ACL


async def retained_on(broker: Broker, topic: str, user: str | None = None) -> list[bytes]:
    """What a newcomer gets retained on ``topic`` (waiting a moment for it)."""
    async with aiomqtt.Client(
        broker.host, broker.port, username=user, password=f"{user}-pw" if user else None
    ) as client:
        await client.subscribe(topic, qos=1)
        found: list[bytes] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for message in client.messages:
                    if message.retain:
                        found.append(bytes(message.payload))  # type: ignore[arg-type]
        return found


async def test_a_retained_start_is_refused_counted_and_cleared(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    settings = make_settings()
    topics = Topics(settings.node_id)
    (device_id,) = settings.device_ids()
    async with aiomqtt.Client(broker.host, broker.port) as client:  # before the daemon runs
        await client.publish(topics.set(device_id), START, qos=1, retain=True)
    async with (
        watching(broker, topics, topics.result(device_id), topics.set(device_id)) as watcher,
        running(settings, tmp_path) as service,
    ):
        supervisor = service.daemon.slots[device_id].device.supervisor  # type: ignore[union-attr]
        refused = (await watcher.first(topics.result(device_id))).json()
        assert refused["ok"] is False
        assert refused["reason"] == "retained"
        assert refused["action"] == "start"
        assert refused["id"] == "kept"
        assert "never obeyed" in refused["error"]
        await watcher.cleared(topics.set(device_id))  # the daemon publishes an empty retained
        assert await retained_on(broker, topics.set(device_id)) == []
        # published live with the retain flag: MQTT 5 shows the flag as published
        since = len(watcher.seen)
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.publish(topics.set(device_id), START, qos=1, retain=True)
        again = (await watcher.first(topics.result(device_id), since)).json()
        assert again["reason"] == "retained"
        await watcher.cleared(topics.set(device_id), since)
        await asyncio.sleep(0.3)
        assert not supervisor.running
        assert service.bridge.rejected["retained"] == 2
        assert await retained_on(broker, topics.set(device_id)) == []
    with History(tmp_path / "history.sqlite3") as history:
        assert history.sessions() == []


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker with passwords, docs/mosquitto.acl, and retained messages kept on disk."""
    directory = tmp_path_factory.mktemp("guarded")
    passwords = password_file(directory, USERS)
    server = Broker(
        directory,
        free_port(),
        anonymous=False,
        persistent=True,
        extra=f"password_file {passwords}\nacl_file {ACL}\n",
    )
    server.start()
    try:
        yield server
    finally:
        server.kill()


@contextlib.asynccontextmanager
async def as_user(broker: Broker, user: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        broker.host, broker.port, username=user, password=f"{user}-pw"
    ) as client:
        yield client


def guarded_settings(make_settings: Settings, broker: Broker, tmp_path: Path) -> ServeSettings:
    password = tmp_path / "password"
    password.write_text("gunctl-pw\n")
    return make_settings(
        node_id="guarded",
        mqtt={
            "host": broker.host,
            "port": broker.port,
            "user": "gunctl",
            "password_file": password,
        },
    )


async def test_a_retained_start_stays_refused_across_daemon_and_broker_restarts(
    guarded: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    settings = guarded_settings(make_settings, guarded, tmp_path)
    topics = Topics(settings.node_id)
    (device_id,) = settings.device_ids()
    async with as_user(guarded, "controller") as controller:
        await controller.publish(topics.set(device_id), START, qos=1, retain=True)
    for restart in ("first run", "daemon restart", "broker restart"):
        if restart == "broker restart":
            guarded.stop()
            guarded.start()
        async with running(settings, tmp_path) as service:
            slot = service.daemon.slots[device_id]
            for _ in range(50):  # the retained start arrives with the subscription
                if service.bridge.rejected["retained"]:
                    break
                await asyncio.sleep(0.05)
            assert service.bridge.rejected["retained"] == 1, restart
            await asyncio.sleep(0.3)
            assert slot.device is not None
            assert not slot.device.supervisor.running, restart
        # the daemon may not write command topics, so the start is still on the broker
        assert await retained_on(guarded, topics.set(device_id), "controller") == [
            START.encode()
        ], restart
    with History(tmp_path / "history.sqlite3") as history:
        assert history.sessions() == []  # nothing ever started by itself
    async with as_user(guarded, "controller") as controller:  # what the docs say to do
        await controller.publish(topics.set(device_id), b"", qos=1, retain=True)


async def test_only_trusted_clients_reach_a_gun(
    guarded: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    settings = guarded_settings(make_settings, guarded, tmp_path)
    topics = Topics(settings.node_id)
    (device_id,) = settings.device_ids()
    async with running(settings, tmp_path) as service:
        supervisor = service.daemon.slots[device_id].device.supervisor  # type: ignore[union-attr]
        async with as_user(guarded, "stranger") as stranger:
            for n in range(200):  # commands, junk and stops: the broker drops them all
                await stranger.publish(topics.set(device_id), START, qos=1)
                await stranger.publish(topics.set(device_id), b"junk %d" % n, qos=1)
                await stranger.publish(topics.stop(device_id), b"{}", qos=1)
                await stranger.publish(topics.bridge_set_all, b'{"action":"stop_all"}', qos=1)
        await asyncio.sleep(0.3)
        assert service.bridge.intake.commands == 0
        assert sum(service.bridge.rejected.values()) == 0
        async with as_user(guarded, "controller") as controller:
            await controller.publish(topics.set(device_id), START.replace("kept", "ok"), qos=1)
            for _ in range(50):
                if supervisor.running:
                    break
                await asyncio.sleep(0.05)
            assert supervisor.running
        async with as_user(guarded, "homeassistant") as home:  # Home Assistant's Stop button
            await home.publish(topics.stop(device_id), b'{"action": "stop"}', qos=1)
            for _ in range(50):
                if not supervisor.running:
                    break
                await asyncio.sleep(0.05)
            assert not supervisor.running
        assert service.bridge.intake.commands == 2
