"""A flood of made-up nodes: bridge states and device lists for node ids nobody runs.

Both the daemon and its commands process keep a bounded number of them; what
they forgot shows in the daemon's diagnostics, no gun is removed from Home
Assistant on the strength of what was forgotten, and a command for a device
nobody serves is still answered once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiomqtt
import pytest
from mqtthost import Broker, running, watching
from test_neighbours import retained

from gunctl.config import ServeSettings
from gunctl.mqtt.neighbours import BRIDGES_MAX, DEVICES_MAX
from gunctl.mqtt.service import Service
from gunctl.mqtt.topics import OFFLINE, ONLINE, Topics

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]

FAKE_NODES = 400  # made-up nodes, each online and listing IDS_EACH made-up guns
IDS_EACH = 20
KEPT_LISTS = DEVICES_MAX // IDS_EACH  # the newest lists that fit


async def screen_forgot(service: Service, bridges: int) -> None:
    """Wait until the daemon hears that its commands process forgot ``bridges`` bridges."""

    def forgotten() -> int:
        return int((service.bridge.setline.stats()["neighbours"] or {}).get("bridges_forgotten", 0))

    async with asyncio.timeout(20):
        while forgotten() < bridges:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_made_up_nodes_are_forgotten_counted_and_remove_no_gun(
    broker: Broker, make_settings: Settings
) -> None:
    settings, elsewhere = make_settings(), make_settings()
    topics, theirs = Topics(settings.node_id), Topics(elsewhere.node_id)
    moved = f"sim-{elsewhere.node_id}-1"  # this node's gun once, the other node's now
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(topics.bridge_devices, json.dumps([moved]), qos=1, retain=True)
        await client.publish(theirs.bridge_devices, json.dumps([moved]), qos=1, retain=True)
        await client.publish(topics.discovery(moved), b"{}", qos=1, retain=True)
        await client.publish(topics.availability(moved), OFFLINE, qos=1, retain=True)
        for n in range(FAKE_NODES):  # after the real ones: a newcomer hears them later
            fake = Topics(f"zz{n:04d}")
            await client.publish(fake.bridge_state, ONLINE, qos=0, retain=True)
            ids = [f"zz{n:04d}-{k}" for k in range(IDS_EACH)]
            await client.publish(fake.bridge_devices, json.dumps(ids), qos=0, retain=True)
        await client.publish(Topics("zz-done").bridge_state, OFFLINE, qos=1)  # all of it is in
    # every online bridge but the BRIDGES_MAX lowest (this one and made-up ones) is forgotten
    bridges_forgotten = FAKE_NODES + 1 - BRIDGES_MAX
    async with running(settings) as service:
        known = service.bridge.neighbours
        own = sorted(service.daemon.slots)
        async with watching(broker, topics, topics.bridge_devices) as watcher:
            # listed a second after connecting: the guns that left were removed, or not
            await watcher.until(lambda m: m.payload and m.json() == own, timeout=20)
        await service.bridge.flushed()
        assert elsewhere.node_id not in known.lists  # the premise: the other's list is forgotten
        await screen_forgot(service, bridges_forgotten)
        diagnostics = service.bridge.diagnostics()
        mine, screens = diagnostics["neighbours"], diagnostics["set_line"]["neighbours"]
        assert mine["bridges"] == screens["bridges"] == BRIDGES_MAX
        assert mine["bridges_forgotten"] == screens["bridges_forgotten"] == bridges_forgotten
        # this node's old list, the other's, and the oldest made-up ones
        assert mine["lists_forgotten"] == 2 + FAKE_NODES - KEPT_LISTS
        assert mine["listed"] <= DEVICES_MAX
    assert await retained(broker, topics.discovery(moved)) == b"{}"  # still in Home Assistant
    assert await retained(broker, topics.availability(moved)) == OFFLINE.encode()


async def test_made_up_bridges_leave_one_answer_for_a_device_nobody_serves(
    broker: Broker, make_settings: Settings
) -> None:
    daemons = sorted((make_settings(), make_settings()), key=lambda s: s.node_id)
    topics = Topics(daemons[0].node_id)
    async with (
        running(daemons[0]) as lowest,
        running(daemons[1]) as other,
        watching(broker, topics, topics.result("+")) as watcher,
    ):
        # heard after the real bridges, live: pushing out the oldest would push them out
        for n in range(BRIDGES_MAX + 100):
            await watcher.client.publish(Topics(f"zy{n:04d}").bridge_state, ONLINE, qos=1)
        nobody = "nobody-1"
        result = await watcher.command(nobody, {"action": "stop"})
        assert result["reason"] == "unknown_device"
        # the other daemon's commands process reads in order: past this, it read the above
        (its_gun,) = other.daemon.slots
        assert (await watcher.command(its_gun, {"action": "nonsense"}))["reason"] == "invalid"
        assert len(watcher.on(topics.result(nobody))) == 1
        await screen_forgot(other, 100)  # it did forget made-up bridges
        async with asyncio.timeout(10):  # the one that answered is the lowest
            while "unknown_device" not in lowest.bridge.rejected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
