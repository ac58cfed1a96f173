"""``gunctl serve`` on a real broker with a gun behind a fake ESPHome Bluetooth proxy.

The gun leaves the proxy's range mid-session: the session ends with the motor
stopped and the rule named over MQTT; the daemon connects again once the proxy
hears the gun, and starts nothing by itself. Real time (a BLE gun never runs on
a fast clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from mqtthost import Broker, running, watching

from gunctl.clock import Clock
from gunctl.config import ServeSettings, ble_device_id
from gunctl.daemon import Backoff
from gunctl.mqtt.topics import Topics
from gunctl.specs.loader import get_spec
from gunsim import SimDevice
from gunsim.esphome.proxy import FakeProxy

pytestmark = [pytest.mark.mqtt, pytest.mark.proxy]


async def test_a_gun_behind_a_proxy_is_stopped_reconnected_and_never_resumed(
    broker: Broker, make_settings: Callable[..., ServeSettings]
) -> None:
    gun = SimDevice(get_spec("basic-5level"), clock=Clock(), seed=11)
    await gun.start()
    proxy = FakeProxy("hall")
    heard = proxy.add(gun, rssi=-58)
    await proxy.start()
    settings = make_settings(
        devices={"sim": 0, "ble": [heard.address]}, time_scale=1.0, proxies=[proxy.address]
    )
    topics = Topics(settings.node_id)
    device_id = ble_device_id(heard.address)
    event = topics.event(device_id)
    try:
        async with (
            watching(broker, topics, f"{topics.base}/#") as watcher,
            running(settings) as service,
        ):
            service.daemon.backoff = Backoff(first_s=0.2, cap_s=0.5)
            await watcher.state(device_id, lambda s: s["connected"])
            assert (await watcher.command(device_id, {"action": "start", "protocol": "long"}))["ok"]
            assert (await watcher.command(device_id, {"action": "confirm_head"}))["ok"]
            await watcher.state(device_id, lambda s: s["setpoint_ppm"] > 0, 15)
            assert gun.state.running

            since = len(watcher.seen)
            proxy.move(heard.address, None)  # carried out of the proxy's range
            proxy.drop(heard.address)
            stop = await watcher.until(
                lambda m: m.topic == event and m.json()["type"] == "safety_stop", since=since
            )
            assert stop.json()["rule"] == "link_lost"
            aborted = await watcher.until(
                lambda m: m.topic == event and m.json()["type"] == "session_aborted", since=since
            )
            assert aborted.json()["reason"] == "link_lost"
            await watcher.state(device_id, lambda s: not s["connected"])
            assert not gun.state.running

            await asyncio.sleep(1.5)  # retries find nothing to connect to
            assert not gun.connected
            proxy.move(heard.address, -58)  # back in range
            since = len(watcher.seen)
            await watcher.until(
                lambda m: (
                    m.topic == topics.state(device_id) and bool(m.payload) and m.json()["connected"]
                ),
                15,
                since=since,
            )
            assert gun.connected
            await asyncio.sleep(1.0)
            assert "session_started" not in watcher.events(device_id)[-3:]
            assert watcher.events(device_id).count("session_started") == 1
            assert not gun.state.running
    finally:
        await proxy.aclose()
        await gun.aclose()
