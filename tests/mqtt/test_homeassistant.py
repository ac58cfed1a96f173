"""gunctl through a real Home Assistant core: what a person sees and presses on the device page.

Home Assistant runs as its own process (``scripts/bootstrap-ha`` installs it),
with its MQTT integration on this module's private Mosquitto, and is driven
only through its own REST and websocket API, as its frontend drives it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hahost import venv_python
from mqtthost import Broker, Watcher, free_port, running, watching
from ruamel.yaml import YAML

from bench.homeassistant import HomeAssistant
from gunctl.config import ServeSettings
from gunctl.mqtt.discovery import device_config
from gunctl.mqtt.topics import Topics

pytestmark = [pytest.mark.mqtt, pytest.mark.homeassistant]

Settings = Callable[..., ServeSettings]
DOC = Path(__file__).parents[2] / "docs" / "homeassistant.md"

# A line of Home Assistant's log at warning level or above: what it says about a
# discovery payload, a template or a message it does not like.
COMPLAINT = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")
# What it says about this machine rather than about gunctl.
MACHINE = re.compile(r"Skipping pip installation|zlib_ng and isal|libturbojpeg")


def complaints(hass: HomeAssistant) -> list[str]:
    return [
        line
        for line in hass.log().splitlines()
        if COMPLAINT.match(line) and not MACHINE.search(line)
    ]


IN_SESSION = ("pause", "resume", "skip", "confirm_head")
# every entity gunctl announces for a gun, by its key
KEYS = tuple(
    device_config(
        Topics("n"),
        "d",
        name="d",
        address=None,
        model="m",
        manufacturer="m",
        firmware=None,
        protocols={},
        simulated=True,
    )["cmps"]
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


async def test_every_discovered_entity_appears_on_one_device_without_a_warning(
    hass: HomeAssistant, broker: Broker, make_settings: Settings
) -> None:
    two = make_settings(devices={"sim": 2})
    named = f"sim-{two.node_id}-1"
    async with running(two.model_copy(update={"names": {named: "Sofa gun"}})) as service:
        topics = service.bridge.topics
        async with watching(broker, topics, f"{topics.discovery_prefix}/#") as watcher:
            for device_id in service.daemon.slots:
                config: dict[str, Any] = (await watcher.first(topics.discovery(device_id))).json()
                unique_ids = {c["unique_id"] for c in config["cmps"].values()}
                entity_ids = await hass.entity_ids(unique_ids)

                devices = [
                    d
                    for d in await hass.devices()
                    if ["mqtt", f"gunctl_{device_id}"] in d["identifiers"]
                ]
                assert len(devices) == 1, devices
                registry = await hass.entities()
                assert {registry[u]["device_id"] for u in unique_ids} == {devices[0]["id"]}
                assert devices[0]["name"] == (
                    "Sofa gun" if device_id == named else f"Massage gun {device_id}"
                )
                for unique_id, entity_id in entity_ids.items():
                    key = unique_id.removeprefix(f"gunctl_{device_id}_")
                    if registry[unique_id]["disabled_by"] is not None:
                        # a simulated gun has no radio; the busiest counters are opt-in
                        assert key in ("rssi", "frames", "commands"), key
                        continue
                    # controls for a session in progress are not offered while idle
                    await _offered(hass, entity_id, key not in IN_SESSION)
                # how the host keeps up, from the bridge's diagnostics, on the gun's page
                late = entity_ids[f"gunctl_{device_id}_loop_late"]
                shown = await hass.until_state(late, lambda s: s not in ("unknown", "unavailable"))
                assert float(shown["state"]) >= 0
                assert shown["attributes"]["unit_of_measurement"] == "ms"
    assert complaints(hass) == []


async def _page(hass: HomeAssistant, watcher: Watcher, device_id: str) -> Callable[[str], str]:
    """The entity id of each of the gun's controls and sensors, by gunctl's key for it."""
    topics = watcher.topics
    config: dict[str, Any] = (await watcher.first(topics.discovery(device_id))).json()
    ids = await hass.entity_ids({c["unique_id"] for c in config["cmps"].values()})
    return lambda key: ids[f"gunctl_{device_id}_{key}"]


async def _choose(hass: HomeAssistant, entity_id: str, option: str) -> None:
    """Pick ``option`` in a select once it is offered, and wait for gunctl to show it."""
    await hass.until_state(entity_id, lambda s: s != "unavailable")
    await hass.call("select", "select_option", entity_id=entity_id, option=option)
    await hass.until_state(entity_id, option)


async def _fired(hass: HomeAssistant, entity_id: str, event_type: str) -> dict[str, Any]:
    """The event entity's state once it last fired with ``event_type``."""
    async with asyncio.timeout(10):
        while True:
            state = await hass.state(entity_id)
            if state["attributes"].get("event_type") == event_type:
                return state
            await asyncio.sleep(0.05)


async def _offered(hass: HomeAssistant, entity_id: str, offered: bool) -> None:
    await hass.until_state(entity_id, lambda s: (s != "unavailable") == offered)


async def test_a_whole_session_run_from_the_device_page(
    hass: HomeAssistant, broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings(time_scale=5.0)) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(
            broker, topics, f"{topics.discovery_prefix}/#", topics.stop(device_id)
        ) as watcher:
            entity = await _page(hass, watcher, device_id)
            await hass.until_state(entity("phase"), "idle")
            for key, offered in (("start", True), ("pause", False), ("resume", False)):
                await _offered(hass, entity(key), offered)

            # the protocol is chosen by its title, and the gun is told its name
            await _choose(hass, entity("protocol"), "One long hold")
            await hass.call("button", "press", entity_id=entity("start"))
            await hass.until_state(entity("phase"), "waiting_for_head")
            await _offered(hass, entity("start"), False)
            await _offered(hass, entity("confirm_head"), True)
            assert (await hass.state(entity("motor")))["state"] == "off"

            await hass.call("button", "press", entity_id=entity("confirm_head"))
            await hass.until_state(entity("phase"), "running")
            await hass.until_state(entity("motor"), "on")
            assert (await hass.state(entity("step")))["state"] == "Gluteus maximus (left)"
            left = await hass.state(entity("session_remaining"))
            assert left["attributes"]["unit_of_measurement"] == "s"
            assert 0 < float(left["state"]) <= 94

            await hass.call("button", "press", entity_id=entity("pause"))
            await hass.until_state(entity("phase"), "paused")
            await _offered(hass, entity("resume"), True)
            await hass.until_state(entity("motor"), "off")
            await hass.call("button", "press", entity_id=entity("resume"))
            await hass.until_state(entity("phase"), "running")
            await hass.until_state(entity("motor"), "on")

            since = len(watcher.seen)
            await hass.call("button", "press", entity_id=entity("stop"))
            await hass.until_state(entity("running"), "off")
            await hass.until_state(entity("motor"), "off")
            stop = await watcher.first(topics.stop(device_id), since=since)  # the stop line
            assert stop.json() == {"action": "stop"}
            # what Home Assistant actually sent: the watcher subscribes at QoS 1, so it
            # receives each command at the QoS Home Assistant published it with
            assert stop.qos == 1

            # the session's events reach automations through the event entity
            event = await _fired(hass, entity("events"), "session_aborted")
            assert event["attributes"]["reason"] == "stopped"
    assert complaints(hass) == []


async def test_a_refused_start_is_shown_on_the_device_page(
    hass: HomeAssistant, broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, f"{topics.discovery_prefix}/#") as watcher:
            entity = await _page(hass, watcher, device_id)
            await _offered(hass, entity("start"), True)
            await hass.call("button", "press", entity_id=entity("start"))  # nothing selected
            shown = await hass.until_state(entity("last_result"), lambda s: s.startswith("start"))
            fired = await _fired(hass, entity("events"), "command_refused")
    assert "protocol" in shown["state"], shown
    assert shown["attributes"]["ok"] is False
    assert fired["attributes"]["action"] == "start"
    assert fired["attributes"]["reason"] == "invalid"
    assert (await hass.state(entity("phase")))["state"] != "running"


async def test_the_diary_on_the_device_page(
    hass: HomeAssistant, broker: Broker, make_settings: Settings
) -> None:
    """A severe score set on the page lights the problem sensor; the visit button clears it."""
    async with running(make_settings()) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, f"{topics.discovery_prefix}/#") as watcher:
            entity = await _page(hass, watcher, device_id)
            await hass.until_state(entity("professional_needed"), "off")
            await hass.call("number", "set_value", entity_id=entity("pain_before"), value=9)
            problem = await hass.until_state(entity("professional_needed"), "on")
            assert problem["attributes"]["rule"] == "pain_severe"
            assert "seek medical attention" in problem["attributes"]["advice"]
            assert (await hass.until_state(entity("last_pain_before"), "9"))["attributes"][
                "recorded_at"
            ]
            assert (await hass.state(entity("pain_before")))["state"] == "9"
            await _choose(hass, entity("protocol"), "One long hold")
            await hass.call("button", "press", entity_id=entity("start"))  # refused
            shown = await hass.until_state(entity("last_result"), lambda s: s.startswith("start"))
            assert "pain_severe" in shown["state"]
            await hass.call("button", "press", entity_id=entity("professional_seen"))
            await hass.until_state(entity("professional_needed"), "off")
            minutes = await hass.state(entity("minutes_this_week"))
            assert (minutes["state"], minutes["attributes"]["unit_of_measurement"]) == (
                "0.0",
                "min",
            )
    assert complaints(hass) == []


async def test_the_choices_on_the_page_survive_a_daemon_restart(
    hass: HomeAssistant, broker: Broker, make_settings: Settings
) -> None:
    settings = make_settings()
    async with running(settings) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, f"{topics.discovery_prefix}/#") as watcher:
            entity = await _page(hass, watcher, device_id)
            await _choose(hass, entity("protocol"), "One long hold")
            await _choose(hass, entity("side"), "left")
    await hass.until_state(entity("protocol"), "unavailable")  # the daemon said offline

    async with running(settings):
        await hass.until_state(entity("protocol"), "One long hold")
        assert (await hass.state(entity("side")))["state"] == "left"
        await _offered(hass, entity("start"), True)
        await hass.call("button", "press", entity_id=entity("start"))
        await hass.until_state(entity("phase"), "waiting_for_head")
        await hass.call("button", "press", entity_id=entity("stop"))
        await hass.until_state(entity("phase"), "idle")
    assert complaints(hass) == []


async def test_a_start_from_the_page_asks_about_the_warning_signs_first(
    hass: HomeAssistant, broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings(red_flags_acknowledged=False)) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, f"{topics.discovery_prefix}/#") as watcher:
            entity = await _page(hass, watcher, device_id)
            await _choose(hass, entity("protocol"), "One long hold")
            await hass.call("button", "press", entity_id=entity("start"))
            refused = await hass.until_state(
                entity("last_result"), lambda s: s.startswith("start:")
            )
            assert "first confirm that none of the warning signs apply" in refused["state"]
            assert "bladder or bowel" in refused["attributes"]["error"]

            await hass.call("button", "press", entity_id=entity("confirm_red_flags"))
            await hass.until_state(entity("last_result"), "confirm_no_red_flags: done")
            await hass.call("button", "press", entity_id=entity("start"))
            await hass.until_state(entity("phase"), "waiting_for_head")
            await hass.call("button", "press", entity_id=entity("stop"))
            await hass.until_state(entity("phase"), "idle")
    assert complaints(hass) == []


def _doc_block(marker: str) -> Any:
    """The YAML block of docs/homeassistant.md whose first line is ``# <marker>``."""
    for block in re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(), re.MULTILINE | re.DOTALL):
        if block.startswith(f"# {marker}\n"):
            return YAML(typ="safe").load(block)
    raise AssertionError(f"docs/homeassistant.md has no {marker!r} block")


async def test_the_card_and_the_automation_in_the_docs_work(
    hass: HomeAssistant, broker: Broker, make_settings: Settings
) -> None:
    settings = make_settings(node_id="desk", names={"sim-desk-1": "Desk gun"}, time_scale=5.0)
    card, automation = _doc_block("dashboard card"), _doc_block("automation")
    await hass.rest("POST", "/api/config/automation/config/desk_gun_head", automation)
    async with running(settings) as service:
        topics = service.bridge.topics
        async with watching(broker, topics, f"{topics.discovery_prefix}/#") as watcher:
            entity = await _page(hass, watcher, "sim-desk-1")
            shown = {row["entity"] for row in card["entities"]}
            assert shown <= set(map(entity, KEYS)), shown - set(map(entity, KEYS))
            assert entity("events") == "event.desk_gun_session_event"

            await _choose(hass, entity("protocol"), "One long hold")
            await hass.call("button", "press", entity_id=entity("start"))
            await hass.until_state(entity("phase"), "waiting_for_head")
            async with asyncio.timeout(10):
                while True:
                    notes = await hass.ws({"type": "persistent_notification/get"})
                    note = next((n for n in notes if n["notification_id"] == "desk_gun_head"), None)
                    if note is not None:
                        break
                    await asyncio.sleep(0.05)
            await hass.call("button", "press", entity_id=entity("stop"))
            await hass.until_state(entity("phase"), "idle")
    assert note["message"] == (
        "Fit the ball head for gluteus maximus (left), then press Head fitted."
    )
    assert complaints(hass) == []
