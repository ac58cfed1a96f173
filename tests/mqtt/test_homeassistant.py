"""gunctl through a real Home Assistant core: what a person sees and presses on the device page.

Home Assistant runs as its own process (``scripts/bootstrap-ha`` installs it),
with its MQTT integration on this module's private Mosquitto, and is driven
only through its own REST and websocket API, as its frontend drives it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hahost import HomeAssistant, venv_python
from mqtthost import Broker, free_port, running, watching

from gunctl.config import ServeSettings

pytestmark = [pytest.mark.mqtt, pytest.mark.homeassistant]

Settings = Callable[..., ServeSettings]

# A line of Home Assistant's log that its MQTT integration or an MQTT entity wrote at
# warning level or above: what it says about a discovery payload it does not like.
MQTT_COMPLAINT = re.compile(
    r"^\S+ \S+ (WARNING|ERROR|CRITICAL) \(\w+\) \[homeassistant\.components\.mqtt"
)


@pytest.fixture(scope="module")
def hass(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAssistant]:
    home = HomeAssistant(venv_python(), tmp_path_factory.mktemp("homeassistant"), free_port())
    home.start()
    asyncio.run(home.setup(broker.host, broker.port))
    try:
        yield home
    finally:
        home.stop()


async def _entity_ids(hass: HomeAssistant, unique_ids: set[str]) -> dict[str, str]:
    """Wait for Home Assistant to register every unique id; map each to its entity id."""
    async with asyncio.timeout(20):
        while True:
            registered = await hass.entities()
            if unique_ids <= set(registered):
                return {u: registered[u]["entity_id"] for u in unique_ids}
            await asyncio.sleep(0.1)


async def test_every_discovered_entity_appears_on_one_device_without_a_warning(
    hass: HomeAssistant, broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings(devices={"sim": 2})) as service:
        topics = service.bridge.topics
        async with watching(broker, topics, f"{topics.discovery_prefix}/#") as watcher:
            for device_id in service.daemon.slots:
                config: dict[str, Any] = (await watcher.first(topics.discovery(device_id))).json()
                unique_ids = {c["unique_id"] for c in config["cmps"].values()}
                entity_ids = await _entity_ids(hass, unique_ids)

                devices = [
                    d
                    for d in await hass.devices()
                    if ["mqtt", f"gunctl_{device_id}"] in d["identifiers"]
                ]
                assert len(devices) == 1, devices
                registry = await hass.entities()
                assert {registry[u]["device_id"] for u in unique_ids} == {devices[0]["id"]}
                assert devices[0]["name"] == config["dev"]["name"]
                for entity_id in entity_ids.values():  # every entity gets a value from gunctl
                    await hass.until_state(entity_id, lambda s: s != "unavailable")
    complaints = [line for line in hass.log().splitlines() if MQTT_COMPLAINT.match(line)]
    assert complaints == []


async def test_a_session_started_and_stopped_from_home_assistant(
    hass: HomeAssistant, broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings(time_scale=5.0)) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(
            broker,
            topics,
            f"{topics.discovery_prefix}/#",
            topics.set(device_id),
            topics.stop(device_id),
        ) as watcher:
            config: dict[str, Any] = (await watcher.first(topics.discovery(device_id))).json()
            ids = await _entity_ids(hass, {c["unique_id"] for c in config["cmps"].values()})

            def entity(key: str) -> str:
                return ids[f"gunctl_{device_id}_{key}"]

            await hass.until_state(entity("protocol"), lambda s: s != "unavailable")
            await hass.call("select", "select_option", entity_id=entity("protocol"), option="long")
            await hass.until_state(entity("protocol"), "long")
            await hass.call("button", "press", entity_id=entity("start"))
            await hass.until_state(entity("running"), "on")

            since = len(watcher.seen)
            await hass.call("button", "press", entity_id=entity("stop"))
            await hass.until_state(entity("running"), "off")
            stop = await watcher.first(topics.stop(device_id), since=since)  # the stop line
            assert stop.json() == {"action": "stop"}
            # what Home Assistant actually sent: the watcher subscribes at QoS 1, so it
            # receives each command at the QoS Home Assistant published it with
            assert stop.qos == 1
