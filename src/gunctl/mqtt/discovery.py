"""Home Assistant device-based MQTT discovery for one gun.

One retained message at ``<prefix>/device/<device_id>/config`` declares the
device (``dev``), where the integration comes from (``o``) and every entity
(``cmps``, each with its platform ``p`` and a ``unique_id``). Every entity is
available only while both the bridge and the device's link are online
(``availability_mode: all``). An empty retained payload on the same topic
removes the device.

Every control publishes a JSON command: the buttons with a fixed payload, the
select and the number through a ``command_template`` that makes a ``select``
command. Start and Head fitted go to the command topic, ``<base>/<device_id>/set``;
Stop and Pain go to ``<base>/<device_id>/stop``, which a connection of its own
serves, so that no flood on ``set`` can hold a stop back. Home Assistant,
mosquitto_pub and any other client are handled by the same code.
"""

from __future__ import annotations

import json
from typing import Any

from gunctl import __version__
from gunctl.mqtt.commands import STOPS
from gunctl.mqtt.topics import OFFLINE, ONLINE, Topics

ORIGIN = {"name": "gunctl", "sw_version": __version__}
INTENSITY_MIN, INTENSITY_STEP = 0.05, 0.05
QOS = 1  # commands from Home Assistant, and its subscriptions to gunctl's state


def _press(action: str) -> str:
    return json.dumps({"action": action})


def device_config(
    topics: Topics,
    device_id: str,
    *,
    model: str,
    manufacturer: str,
    firmware: str | None,
    protocols: list[str],
) -> dict[str, Any]:
    """The discovery payload for ``device_id``."""
    state = topics.state(device_id)
    command = topics.set(device_id)
    availability = [
        {
            "topic": topics.bridge_state,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
        },
        {
            "topic": topics.availability(device_id),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
        },
    ]

    def button(name: str, action: str, icon: str) -> dict[str, Any]:
        return {
            "p": "button",
            "name": name,
            # the stops go to the stop topic, served by a connection that carries nothing else
            "command_topic": topics.stop(device_id) if action in STOPS else command,
            "payload_press": _press(action),
            "icon": icon,
        }

    def sensor(name: str, field: str, **extra: Any) -> dict[str, Any]:
        return {
            "p": "sensor",
            "name": name,
            "state_topic": state,
            "value_template": f"{{{{ value_json.{field} }}}}",
            **extra,
        }

    def binary(name: str, field: str, device_class: str) -> dict[str, Any]:
        return {
            "p": "binary_sensor",
            "name": name,
            "state_topic": state,
            "value_template": f"{{{{ 'ON' if value_json.{field} else 'OFF' }}}}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": device_class,
        }

    components: dict[str, dict[str, Any]] = {
        "start": button("Start", "start", "mdi:play"),
        "stop": button("Stop", "stop", "mdi:stop"),
        "confirm_head": button("Head fitted", "confirm_head", "mdi:check"),
        "pain_stop": button("Pain: stop", "pain_stop", "mdi:alert-octagon"),
        "protocol": {
            "p": "select",
            "name": "Protocol",
            "options": protocols,
            "command_topic": command,
            "command_template": '{"action": "select", "protocol": "{{ value }}"}',
            "state_topic": state,
            "value_template": "{{ value_json.selected.protocol }}",
            "icon": "mdi:format-list-numbered",
        },
        "side": {
            "p": "select",
            "name": "Side",
            "options": ["both", "left", "right"],
            "command_topic": command,
            "command_template": '{"action": "select", "side": "{{ value }}"}',
            "state_topic": state,
            "value_template": "{{ value_json.selected.side }}",
        },
        "intensity_cap": {
            "p": "number",
            "name": "Intensity cap",
            "min": INTENSITY_MIN,
            "max": 1.0,
            "step": INTENSITY_STEP,
            "mode": "slider",
            "command_topic": command,
            "command_template": '{"action": "select", "intensity_cap": {{ value }}}',
            "state_topic": state,
            "value_template": "{{ value_json.selected.intensity_cap }}",
            "icon": "mdi:speedometer-slow",
        },
        "running": binary("Running", "running", "running"),
        "fault": binary("Safety stop", "fault", "problem"),
        "step": sensor(
            "Step",
            "step",
            value_template=(
                "{{ value_json.step.muscle ~ ' (' ~ value_json.step.side ~ ')' "
                "if value_json.step else 'idle' }}"
            ),
            json_attributes_topic=state,
            json_attributes_template="{{ (value_json.step or {}) | tojson }}",
            icon="mdi:human",
        ),
        "battery": sensor(
            "Battery",
            "battery_pct",
            device_class="battery",
            unit_of_measurement="%",
            state_class="measurement",
        ),
        "temperature": sensor(
            "Motor temperature",
            "temperature_c",
            device_class="temperature",
            unit_of_measurement="°C",
            state_class="measurement",
        ),
        "force": sensor(
            "Force",
            "force_n",
            unit_of_measurement="N",
            state_class="measurement",
            icon="mdi:arrow-collapse-down",
        ),
        "speed": sensor(
            "Speed",
            "speed_ppm",
            unit_of_measurement="ppm",
            state_class="measurement",
            icon="mdi:sine-wave",
        ),
        "rssi": sensor(
            "Signal strength",
            "rssi",
            device_class="signal_strength",
            unit_of_measurement="dBm",
            state_class="measurement",
            entity_category="diagnostic",
        ),
        "firmware": sensor("Firmware", "firmware", entity_category="diagnostic", icon="mdi:chip"),
    }
    for key, component in components.items():
        component["unique_id"] = f"gunctl_{device_id}_{key}"
        component["availability"] = availability
        component["availability_mode"] = "all"
        # Home Assistant does not pass a device-level "qos" down to the entities: each
        # needs its own, or every command (Stop included) is sent at QoS 0.
        component["qos"] = QOS
    device: dict[str, Any] = {
        "identifiers": [f"gunctl_{device_id}"],
        "name": f"Massage gun {device_id}",
        "manufacturer": manufacturer,
        "model": model,
    }
    if firmware:
        device["sw_version"] = firmware
    return {"dev": device, "o": dict(ORIGIN), "cmps": components}
