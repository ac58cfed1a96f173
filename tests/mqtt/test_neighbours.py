"""Several daemons on one broker: each keeps to its own guns and none fights another."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import aiomqtt
import pytest
from mqtthost import Broker, running, watching

from gunctl.config import ServeSettings
from gunctl.mqtt.topics import OFFLINE, ONLINE, Topics

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]


async def retained(broker: Broker, topic: str) -> bytes | None:
    """The retained payload a newcomer gets on ``topic`` (None: nothing retained)."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for message in client.messages:
                    if message.retain:
                        return bytes(message.payload)  # type: ignore[arg-type]
    return None


async def test_a_device_list_from_elsewhere_never_removes_another_daemons_guns(
    broker: Broker, make_settings: Settings
) -> None:
    first = make_settings()
    second = make_settings()
    theirs = Topics(second.node_id)
    async with running(first) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        await service.bridge.flushed()
        # someone leaves a list under the second node's name that names the first's gun,
        # and a gun of the second's own that is gone
        gone = f"sim-{second.node_id}-9"
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.publish(
                theirs.bridge_devices, json.dumps([device_id, gone]), qos=1, retain=True
            )
            await client.publish(theirs.availability(gone), OFFLINE, qos=1, retain=True)
        async with running(second) as other:
            await asyncio.sleep(1.5)  # the second has read every retained message and listed
            await other.bridge.flushed()
            assert await retained(broker, topics.discovery(device_id)) not in (None, b"")
            assert await retained(broker, topics.availability(device_id)) == ONLINE.encode()
            assert await retained(broker, theirs.availability(gone)) is None  # its own: removed
            assert json.loads(await retained(broker, theirs.bridge_devices) or b"[]") == [
                next(iter(other.daemon.slots))
            ]


async def test_a_second_daemon_with_the_same_node_id_is_detected_and_not_fought(
    broker: Broker, make_settings: Settings
) -> None:
    settings = make_settings()
    async with running(settings) as first, running(settings) as second:
        async with asyncio.timeout(10):
            while not (first.bridge.neighbours.duplicate and second.bridge.neighbours.duplicate):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert first.bridge.neighbours.duplicate == second.bridge.instance
        assert second.bridge.neighbours.duplicate == first.bridge.instance
        await asyncio.sleep(1.0)
        assert (first.bridge.connections, second.bridge.connections) == (1, 1)
        assert first.bridge.diagnostics()["duplicate_node"] is True


async def test_a_spoofed_offline_is_contradicted(broker: Broker, make_settings: Settings) -> None:
    async with running(make_settings()) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        await service.bridge.flushed()
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            for topic in (topics.availability(device_id), topics.bridge_state):
                since = len(watcher.seen)
                await watcher.client.publish(topic, OFFLINE, qos=1, retain=True)
                await watcher.until(  # live, not the retained copy a subscription starts with
                    lambda m, t=topic: m.topic == t and m.payload == b"online" and not m.retain,
                    since=since,
                )
                await service.bridge.flushed()
                assert await retained(broker, topic) == ONLINE.encode()
