"""The broker dies mid-session and comes back; several daemons share a broker; stop_all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from mqtthost import Broker, running, the_gun, watching

from gunctl.config import ServeSettings
from gunctl.mqtt.topics import ONLINE
from gunctl.store.history import History

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]


async def test_broker_restart_mid_session(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    async with running(make_settings(), tmp_path) as service:
        topics = service.bridge.topics
        device_id, supervisor = the_gun(service)
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            assert (await watcher.command(device_id, {"action": "start", "protocol": "long"}))["ok"]
            assert (await watcher.command(device_id, {"action": "confirm_head"}))["ok"]
            await watcher.until(
                lambda m: m.topic == topics.event(device_id) and m.json()["type"] == "step_started"
            )

        broker.kill()  # every connection drops; mosquitto keeps nothing (no persistence)
        await asyncio.sleep(0.6)
        assert not service.bridge.connected.is_set()
        assert supervisor.running, "the session must go on under its Supervisor"
        assert not supervisor.driver.setpoint.stopped
        broker.start()
        await asyncio.wait_for(service.bridge.connected.wait(), 10)
        assert service.bridge.connections == 2
        await asyncio.sleep(0.1)
        await service.bridge.flushed()

        # a newcomer sees everything retained again, published by the reconnected bridge
        async with watching(
            broker, topics, f"{topics.base}/#", f"{topics.discovery_prefix}/#"
        ) as watcher:
            await watcher.until(
                lambda m: m.topic == topics.bridge_state and m.payload == ONLINE.encode()
            )
            await watcher.until(lambda m: m.topic == topics.availability(device_id) and m.retain)
            await watcher.until(lambda m: m.topic == topics.discovery(device_id) and m.retain)
            state = await watcher.state(device_id, lambda s: s["running"])
            assert state["connected"]
            # the commands process ended with its connection, and another reads set again
            await asyncio.wait_for(service.bridge.setline.connected.wait(), 30)
            assert service.bridge.setline.restarts >= 1
            busy = await watcher.command(device_id, {"action": "start", "protocol": "long"})
            assert busy["reason"] == "busy", busy
            await watcher.until(
                lambda m: (
                    m.topic == topics.event(device_id) and m.json()["type"] == "session_completed"
                ),
                20,
            )
    with History(tmp_path / "history.sqlite3") as history:
        (record,) = history.sessions()
    assert record.status == "completed"
    assert record.safety_stops == []


async def test_two_instances_share_a_broker_and_stop_all_stops_both(
    broker: Broker, make_settings: Settings
) -> None:
    first, second = make_settings(), make_settings()
    async with contextlib.AsyncExitStack() as stack:
        services = [await stack.enter_async_context(running(s)) for s in (first, second)]
        topics = services[0].bridge.topics
        ids = [next(iter(s.daemon.slots)) for s in services]
        assert len(set(ids)) == 2  # sim-<node>-1: unique across instances
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            async with asyncio.timeout(10):  # both bridges learn each other's availability
                while not all(all(map(s.bridge.neighbours.knows, ids)) for s in services):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            for device_id in ids:
                result = await watcher.command(device_id, {"action": "start", "protocol": "long"})
                assert result["ok"], result
            await asyncio.sleep(0.3)
            for device_id in ids:  # exactly one answer each: from the instance holding the gun
                assert len(watcher.on(topics.result(device_id))) == 1
            for service in services:
                assert service.bridge.rejected["unknown_device"] == 0
            for service in services:
                (slot,) = service.daemon.slots.values()
                assert slot.device is not None
                assert slot.device.supervisor.running

            # one instance's own topic stops only its guns
            await watcher.client.publish(
                services[0].bridge.topics.bridge_set, '{"action": "stop_all", "id": "one"}', qos=1
            )
            reply = await watcher.until(
                lambda m: m.topic == services[0].bridge.topics.bridge_result
            )
            assert reply.json()["stopped"] == [ids[0]]
            await watcher.state(ids[0], lambda s: not s["running"])
            assert services[1].daemon.slots[ids[1]].device.supervisor.running  # type: ignore[union-attr]

            # the shared topic stops every gun of every instance
            assert (await watcher.command(ids[0], {"action": "start", "protocol": "long"}))["ok"]
            since = len(watcher.seen)
            await watcher.client.publish(topics.bridge_set_all, '{"action": "stop_all"}', qos=1)
            for service, device_id in zip(services, ids, strict=True):
                reply = await watcher.first(service.bridge.topics.bridge_result, since)
                assert reply.json()["stopped"] == [device_id]
                await watcher.state(device_id, lambda s: not s["running"])
            for service in services:
                (slot,) = service.daemon.slots.values()
                assert slot.device is not None
                assert slot.device.supervisor.driver.setpoint.stopped
                assert watcher.events(slot.device_id)[-1] == "session_aborted"
