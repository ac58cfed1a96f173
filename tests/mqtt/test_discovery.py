"""Home Assistant device discovery: documented keys, topics that work, removal, re-publishing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import jinja2
import pytest
from mqtthost import Broker, running, watching

from gunctl import __version__
from gunctl.config import ServeSettings
from gunctl.mqtt.commands import parse_device_command
from gunctl.mqtt.discovery import device_config
from gunctl.mqtt.topics import Topics

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]

# Keys from Home Assistant's MQTT integration documentation, per platform, that a
# discovered entity may carry (full names; gunctl does not use the abbreviations).
COMMON = {
    "p",
    "name",
    "unique_id",
    "availability",
    "availability_mode",
    "icon",
    "entity_category",
    "enabled_by_default",
    "json_attributes_topic",
    "json_attributes_template",
    "qos",
    "device_class",
}
PLATFORM_KEYS = {
    "button": {"command_topic", "command_template", "payload_press", "retain"},
    "select": {
        "command_topic",
        "command_template",
        "options",
        "state_topic",
        "value_template",
        "optimistic",
        "retain",
    },
    "number": {
        "command_topic",
        "command_template",
        "state_topic",
        "value_template",
        "min",
        "max",
        "step",
        "mode",
        "unit_of_measurement",
        "optimistic",
        "retain",
    },
    "sensor": {
        "state_topic",
        "value_template",
        "options",
        "unit_of_measurement",
        "state_class",
        "suggested_display_precision",
        "expire_after",
        "force_update",
    },
    "event": {"state_topic", "value_template", "event_types"},
    "binary_sensor": {
        "state_topic",
        "value_template",
        "payload_on",
        "payload_off",
        "expire_after",
        "off_delay",
    },
}
DEVICE_CLASSES: dict[str, dict[str, str | None]] = {
    "sensor": {
        "battery": "%",
        "temperature": "°C",
        "signal_strength": "dBm",
        "duration": "s",
        "enum": None,
    },
    "binary_sensor": {"running": None, "problem": None},
}
DEVICE_KEYS = {
    "identifiers",
    "name",
    "manufacturer",
    "model",
    "model_id",
    "sw_version",
    "hw_version",
    "serial_number",
    "connections",
    "configuration_url",
    "suggested_area",
    "via_device",
}
REQUIRED = {
    "start": "button",
    "stop": "button",
    "confirm_head": "button",
    "protocol": "select",
    "intensity_cap": "number",
    "running": "binary_sensor",
    "fault": "binary_sensor",
    "battery": "sensor",
    "temperature": "sensor",
    "force": "sensor",
    "speed": "sensor",
    "rssi": "sensor",
    "phase": "sensor",
    "last_safety_stop": "sensor",
    "last_result": "sensor",
    "events": "event",
    "pause": "button",
    "confirm_red_flags": "button",
    "resume": "button",
    "skip": "button",
    "motor": "binary_sensor",
    "loop_late": "sensor",
    "loop_overruns": "sensor",
    "bad_frames": "sensor",
    "refused": "sensor",
}


def render(template: str, **values: Any) -> str:
    """A template as Home Assistant renders it (Jinja, with its ``tojson`` filter)."""
    return jinja2.Environment().from_string(template).render(**values)


def _fields(template: str) -> set[str]:
    return set(re.findall(r"value_json\.([a-z_]+)", template))


async def test_discovery_payload_follows_home_assistant(
    broker: Broker, make_settings: Settings
) -> None:
    settings = make_settings(devices={"sim_spec": "gunctl-open"}, time_scale=5.0)
    async with running(settings) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(
            broker, topics, f"{topics.discovery_prefix}/#", f"{topics.base}/#"
        ) as watcher:
            state = await watcher.state(device_id, lambda s: s["connected"])
            await asyncio.sleep(0.3)
            # the newest: when the firmware version arrives, discovery is published again with it
            config: dict[str, Any] = watcher.on(topics.discovery(device_id))[-1].json()
            state = watcher.on(topics.state(device_id))[-1].json()
            diagnostics = (
                await watcher.until(
                    lambda m: (
                        m.topic == topics.bridge_diagnostics
                        and "max_late_ms" in m.json()["guns"][device_id]
                    )
                )
            ).json()
            diary = (await watcher.until(lambda m: m.topic == topics.bridge_diary)).json()

    assert set(config) == {"dev", "o", "cmps"}
    assert config["o"] == {"name": "gunctl", "sw_version": __version__}
    dev = config["dev"]
    assert set(dev) <= DEVICE_KEYS
    assert dev["identifiers"] == [f"gunctl_{device_id}"]
    assert dev["model"] == "gunctl open reference protocol (maker-built guns)"
    assert dev["manufacturer"]
    assert dev.get("sw_version") == state["firmware"]
    components: dict[str, dict[str, Any]] = config["cmps"]
    for key, platform in REQUIRED.items():
        assert components[key]["p"] == platform, key
    unique_ids = [c["unique_id"] for c in components.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    for key, component in components.items():
        platform = component["p"]
        assert set(component) <= COMMON | PLATFORM_KEYS[platform], (
            key,
            set(component) - COMMON - PLATFORM_KEYS[platform],
        )
        assert component["unique_id"].startswith(f"gunctl_{device_id}_")
        assert component["availability_mode"] == "all"
        assert component["availability"][:2] == [
            {
                "topic": topics.bridge_state,
                "payload_available": "online",
                "payload_not_available": "offline",
            },
            {
                "topic": topics.availability(device_id),
                "payload_available": "online",
                "payload_not_available": "offline",
            },
        ]
        if key in ("stop", "pain_stop"):  # a stop is never hidden
            assert len(component["availability"]) == 2
        assert component["qos"] == 1, key
        if "command_topic" in component:  # Stop and Pain go to the stop line's topic
            stops = key in ("stop", "pain_stop")
            expected = topics.stop(device_id) if stops else topics.set(device_id)
            assert component["command_topic"] == expected, key
        if component.get("state_topic") == topics.state(device_id):
            assert _fields(component["value_template"]) <= set(state), key
        elif component.get("state_topic") == topics.bridge_diagnostics:  # how the host copes
            assert component["entity_category"] == "diagnostic", key
            value = render(component["value_template"], value_json=diagnostics)
            assert float(value) >= 0, (key, value)
            gone = {**diagnostics, "guns": {device_id: {}}}  # not connected: unknown
            assert render(component["value_template"], value_json=gone) == "None", key
        elif component.get("state_topic") == topics.bridge_diary:  # the symptom diary
            assert render(component["value_template"], value_json=diary) in ("None", "OFF", "0.0")
            scored = {
                "simulated": {
                    "last_before": {"pain": 9, "reach": "foot"},
                    "last_after": {"pain": 4},
                    "minutes_this_week": 12.5,
                    "refusal": {"rule": "pain_severe", "message": "-", "advice": "-"},
                }
            }
            value = render(component["value_template"], value_json=scored)
            assert value in ("9", "4", "12.5", "ON"), (key, value)
        elif "state_topic" in component:  # what a command did, and the session's events
            assert key in ("last_result", "events"), key
            topic = topics.result if key == "last_result" else topics.event
            assert component["state_topic"] == topic(device_id), key
        if "device_class" in component:
            units = DEVICE_CLASSES[platform]
            assert component["device_class"] in units, key
            assert component.get("unit_of_measurement") == units[component["device_class"]], key
    assert components["rssi"]["entity_category"] == "diagnostic"
    assert "firmware" not in components  # shown once, as the device's sw_version
    assert components["protocol"]["options"] == [
        service.daemon.catalogue.protocols[name].title for name in service.daemon.protocols
    ]
    number = components["intensity_cap"]
    assert (number["min"], number["max"], number["step"]) == (0.05, 1.0, 0.05)

    # what Home Assistant would send is a command gunctl takes
    for key, action in (
        ("start", "start"),
        ("stop", "stop"),
        ("confirm_head", "confirm_head"),
        ("pain_stop", "pain_stop"),
        ("confirm_red_flags", "confirm_no_red_flags"),
    ):
        command = parse_device_command(components[key]["payload_press"].encode()).command
        assert command.action == action
    rendered = render(components["protocol"]["command_template"], value="Two short holds")
    assert parse_device_command(rendered.encode()).command.protocol == "tiny"  # type: ignore[union-attr]
    rendered = render(number["command_template"], value=0.35)
    assert parse_device_command(rendered.encode()).command.intensity_cap == 0.35  # type: ignore[union-attr]


def test_a_ble_gun_is_joined_to_what_home_assistant_knows_of_its_address() -> None:
    config = device_config(
        Topics("n1"),
        "ble-c45a11203b7e",
        name="Pro",
        address="C4:5A:11:20:3B:7E",
        model="Theragun PRO",
        manufacturer="Therabody",
        firmware=None,
        protocols={"glute": "Glutes"},
        simulated=False,
    )
    assert config["dev"]["connections"] == [["bluetooth", "C4:5A:11:20:3B:7E"]]
    assert config["dev"]["name"] == "Pro"
    assert config["cmps"]["rssi"]["enabled_by_default"] is True


async def test_home_assistant_buttons_drive_the_gun(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(
            broker, topics, f"{topics.discovery_prefix}/#", f"{topics.base}/#"
        ) as watcher:
            config = (await watcher.until(lambda m: m.topic == topics.discovery(device_id))).json()
            cmps = config["cmps"]
            select = render(cmps["protocol"]["command_template"], value="One long hold")
            number = render(cmps["intensity_cap"]["command_template"], value=0.3)
            for payload in (select, number, cmps["start"]["payload_press"]):
                await watcher.client.publish(cmps["start"]["command_topic"], payload, qos=1)
            state = await watcher.state(device_id, lambda s: s["running"])
            assert state["protocol"] == "long"
            assert state["selected"]["intensity_cap"] == 0.3
            await watcher.client.publish(
                cmps["stop"]["command_topic"], cmps["stop"]["payload_press"], qos=1
            )
            await watcher.state(device_id, lambda s: not s["running"])
            assert all(m.json()["ok"] for m in watcher.on(topics.result(device_id)))


async def test_devices_that_left_the_config_are_removed(
    broker: Broker, make_settings: Settings
) -> None:
    two = make_settings(devices={"sim": 2})
    node = two.node_id
    async with running(two) as service:
        topics = service.bridge.topics
        await asyncio.sleep(1.2)  # the device list is published once the retained one is read
        await service.bridge.flushed()
    gone = f"sim-{node}-2"
    one = make_settings(node_id=node, devices={"sim": 1})
    async with watching(
        broker, topics, f"{topics.discovery_prefix}/#", f"{topics.base}/#"
    ) as watcher:
        await watcher.until(lambda m: m.topic == topics.discovery(gone) and m.retain and m.payload)
        since = len(watcher.seen)
        async with running(one):
            for topic in (topics.discovery(gone), topics.availability(gone), topics.state(gone)):
                await watcher.cleared(topic, since)
            await watcher.until(
                lambda m: m.topic == topics.bridge_devices and m.json() == [f"sim-{node}-1"],
                since=since,
            )
            # Home Assistant restarting: everything is announced again
            before = len(watcher.on(topics.discovery(f"sim-{node}-1")))
            await watcher.client.publish(topics.ha_status, "online", qos=1)
            await watcher.until(
                lambda m: m.topic == topics.discovery(f"sim-{node}-1"), since=len(watcher.seen)
            )
            assert len(watcher.on(topics.discovery(f"sim-{node}-1"))) > before
            assert not any(m.payload for m in watcher.on(topics.discovery(gone))[1:]), (
                "the removed device was announced again"
            )
