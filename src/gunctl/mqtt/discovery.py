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
from collections import Counter
from collections.abc import Mapping
from typing import Any

from gunctl import __version__
from gunctl.control.events import EVENT_TYPES
from gunctl.mqtt.payloads import REFUSED
from gunctl.mqtt.topics import OFFLINE, ONLINE, Topics
from gunctl.requests import STOPS
from gunctl.state import PHASES

ORIGIN = {"name": "gunctl", "sw_version": __version__}
INTENSITY_MIN, INTENSITY_STEP = 0.05, 0.05
QOS = 1  # commands from Home Assistant, and its subscriptions to gunctl's state
SPEED_UNIT = "rpm"


def _press(action: str) -> str:
    return json.dumps({"action": action})


def _protocol_labels(protocols: Mapping[str, str]) -> dict[str, str]:
    """A label per protocol name for people to choose from: its title, made unique."""
    titles = Counter(protocols.values())
    return {
        name: title if titles[title] == 1 else f"{title} ({name})"
        for name, title in protocols.items()
    }


def _when(state: str, phases: tuple[str, ...]) -> dict[str, Any]:
    """An availability entry: the control is offered only in these session phases."""
    return {
        "topic": state,
        "value_template": (
            f"{{{{ '{ONLINE}' if value_json.phase in {json.dumps(phases)} else '{OFFLINE}' }}}}"
        ),
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
    }


def device_config(
    topics: Topics,
    device_id: str,
    *,
    name: str,
    address: str | None,
    model: str,
    manufacturer: str,
    firmware: str | None,
    protocols: Mapping[str, str],
    simulated: bool,
) -> dict[str, Any]:
    """The discovery payload for ``device_id``.

    ``protocols`` maps each protocol's name to its title; ``address`` is a Bluetooth
    LE gun's, which Home Assistant uses to join this device to what its own
    Bluetooth integration knows of the same gun.
    """
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
    labels = _protocol_labels(protocols)
    names = {label: name for name, label in labels.items()}

    def button(name: str, action: str, icon: str, *offered: str) -> dict[str, Any]:
        control: dict[str, Any] = {
            "p": "button",
            "name": name,
            # the stops go to the stop topic, served by a connection that carries nothing else
            "command_topic": topics.stop(device_id) if action in STOPS else command,
            "payload_press": _press(action),
            "icon": icon,
        }
        if offered:  # Stop and Pain are never hidden
            control["availability"] = [*availability, _when(state, offered)]
        return control

    def sensor(name: str, value: str, **extra: Any) -> dict[str, Any]:
        """A sensor on the state document; ``value`` is the Jinja expression of its value."""
        return {
            "p": "sensor",
            "name": name,
            "state_topic": state,
            "value_template": f"{{{{ {value} }}}}",
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

    def duration(name: str, value: str) -> dict[str, Any]:
        # "None" is what Home Assistant reads as "no value" (unknown)
        return sensor(
            name,
            value,
            device_class="duration",
            unit_of_measurement="s",
            icon="mdi:timer-sand",
        )

    def diagnostic(
        name: str, field: str, enabled: bool, unit: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """A count or figure of this gun from the bridge's diagnostics: how the host copes."""
        gun = f"value_json.guns[{json.dumps(device_id)}]"
        control: dict[str, Any] = {
            "p": "sensor",
            "name": name,
            "state_topic": topics.bridge_diagnostics,
            # "None" (unknown) while the gun is not connected and has no loop to report
            "value_template": f"{{{{ {gun}.{field} if {field!r} in {gun} else None }}}}",
            "entity_category": "diagnostic",
            "enabled_by_default": enabled,
            **extra,
        }
        if unit is not None:
            control["unit_of_measurement"] = unit
        return control

    def diary(name: str, value: str, **extra: Any) -> dict[str, Any]:
        """An entity on the symptom diary's document: this gun's kind (real or simulated)."""
        return {
            "state_topic": topics.bridge_diary,
            "name": name,
            # "None" (unknown) until the diary has an answer
            "value_template": f"{{{{ {value} }}}}",
            **extra,
        }

    kind = "value_json.simulated" if simulated else "value_json.real"

    def score(moment: str, name: str) -> dict[str, Any]:
        last = f"{kind}.last_{moment}"
        return diary(
            name,
            f"{last}.pain if {last} else None",
            p="number",
            min=0,
            max=10,
            step=1,
            mode="box",
            command_topic=command,
            command_template=(
                f'{{"action": "score", "moment": "{moment}", "pain": {{{{ value | int }}}}}}'
            ),
            icon="mdi:emoticon-sad-outline",
        )

    counted = {"state_class": "total_increasing"}
    idle = ("idle", "done", "safety_stop")
    active = ("running", "resting", "paused", "waiting_for_head")
    components: dict[str, dict[str, Any]] = {
        "confirm_red_flags": button(
            "No warning signs apply", "confirm_no_red_flags", "mdi:clipboard-check-outline", *idle
        ),
        "start": button("Start", "start", "mdi:play", *idle),
        "pause": button("Pause", "pause", "mdi:pause", "running", "resting"),
        "resume": button("Resume", "resume", "mdi:play-pause", "paused"),
        "skip": button("Skip step", "skip", "mdi:skip-next", *active),
        "confirm_head": button("Head fitted", "confirm_head", "mdi:check", "waiting_for_head"),
        "stop": button("Stop", "stop", "mdi:stop"),
        "pain_stop": button("Pain: stop", "pain_stop", "mdi:alert-octagon"),
        "protocol": {
            "p": "select",
            "name": "Protocol",
            "options": list(names),
            "command_topic": command,
            "command_template": (
                "{{ {'action': 'select', 'protocol': "
                + json.dumps(names)
                + ".get(value, value)} | tojson }}"
            ),
            "state_topic": state,
            "value_template": f"{{{{ {json.dumps(labels)}.get(value_json.selected.protocol) }}}}",
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
        "phase": sensor(
            "Session",
            "value_json.phase",
            device_class="enum",
            options=list(PHASES),
            json_attributes_topic=state,
            json_attributes_template=(
                "{{ {'protocol': value_json.protocol_title, "
                "'step': value_json.step.title if value_json.step else None} | tojson }}"
            ),
            icon="mdi:list-status",
        ),
        "running": binary("Session active", "running", "running"),
        "motor": binary("Motor", "motor_running", "running"),
        "fault": binary("Safety stop", "fault", "problem"),
        "last_safety_stop": sensor(
            "Last safety stop",
            "value_json.last_safety_stop.rule if value_json.last_safety_stop else 'none'",
            json_attributes_topic=state,
            json_attributes_template="{{ (value_json.last_safety_stop or {}) | tojson }}",
            icon="mdi:shield-alert",
        ),
        "step": sensor(
            "Step",
            "value_json.step.title if value_json.step else 'none'",
            json_attributes_topic=state,
            json_attributes_template="{{ (value_json.step or {}) | tojson }}",
            icon="mdi:human",
        ),
        "step_remaining": duration(
            "Step time left", "value_json.step.remaining_s if value_json.step else None"
        ),
        "session_remaining": duration("Session time left", "value_json.session_remaining_s"),
        "last_result": {
            "p": "sensor",
            "name": "Last command",
            "state_topic": topics.result(device_id),
            "value_template": (
                "{{ ((value_json.action or 'command') ~ ': ' ~ "
                "('done' if value_json.ok else value_json.error)) | truncate(250) }}"
            ),
            "json_attributes_topic": topics.result(device_id),
            "icon": "mdi:message-reply-text",
        },
        "events": {
            "p": "event",
            "name": "Session event",
            "state_topic": topics.event(device_id),
            "event_types": [*EVENT_TYPES, REFUSED],
            # Home Assistant wants the kind of event in "event_type"; gunctl names it "type"
            "value_template": "{{ dict(value_json, event_type=value_json.type) | tojson }}",
            "icon": "mdi:bell-ring",
        },
        "battery": sensor(
            "Battery",
            "value_json.battery_pct",
            device_class="battery",
            unit_of_measurement="%",
            state_class="measurement",
        ),
        "temperature": sensor(
            "Motor temperature",
            "value_json.temperature_c",
            device_class="temperature",
            unit_of_measurement="°C",
            state_class="measurement",
        ),
        "force": sensor(
            "Force",
            "value_json.force_n",
            unit_of_measurement="N",
            state_class="measurement",
            icon="mdi:arrow-collapse-down",
        ),
        "speed": sensor(
            "Speed",
            "value_json.speed_ppm",
            # one percussion per motor turn; "ppm" would read as parts per million
            unit_of_measurement=SPEED_UNIT,
            state_class="measurement",
            icon="mdi:sine-wave",
        ),
        "rssi": sensor(
            "Signal strength",
            "value_json.rssi",
            device_class="signal_strength",
            unit_of_measurement="dBm",
            state_class="measurement",
            entity_category="diagnostic",
            enabled_by_default=not simulated,  # a simulated gun has no radio
        ),
        # how the host keeps up: the busy or noisy ones are there to be turned on when asked
        "loop_late": diagnostic(
            "Control loop lateness", "max_late_ms", True, "ms", state_class="measurement"
        ),
        "loop_overruns": diagnostic("Control loop overruns", "overruns", True, **counted),
        "frames": diagnostic("Frames received", "frames", False, **counted),
        "bad_frames": diagnostic("Bad frames", "decode_errors", True, **counted),
        "commands": diagnostic("Commands", "commands", False, **counted),
        "refused": diagnostic("Commands refused", "refused", True, **counted),
        # the symptom diary (docs/diary.md): the person's, shared by every gun of a kind
        "pain_before": score("before", "Pain now, before the next session"),
        "pain_after": score("after", "Pain after the last session"),
        **{
            f"last_pain_{moment}": diary(
                f"Last pain score {moment}",
                f"{kind}.last_{moment}.pain if {kind}.last_{moment} else None",
                p="sensor",
                state_class="measurement",
                json_attributes_topic=topics.bridge_diary,
                json_attributes_template=f"{{{{ ({kind}.last_{moment} or {{}}) | tojson }}}}",
                icon="mdi:chart-line",
            )
            for moment in ("before", "after")
        },
        "minutes_this_week": diary(
            "Massage this week",
            f"{kind}.minutes_this_week",
            p="sensor",
            unit_of_measurement="min",
            state_class="measurement",
            icon="mdi:calendar-week",
        ),
        "professional_needed": diary(
            "See a professional",
            f"'ON' if {kind}.refusal else 'OFF'",
            p="binary_sensor",
            payload_on="ON",
            payload_off="OFF",
            device_class="problem",
            json_attributes_topic=topics.bridge_diary,
            json_attributes_template=f"{{{{ ({kind}.refusal or {{}}) | tojson }}}}",
        ),
        "professional_seen": button(
            "A professional has seen me", "professional_seen", "mdi:doctor"
        ),
    }
    for key, component in components.items():
        component["unique_id"] = f"gunctl_{device_id}_{key}"
        component.setdefault("availability", availability)
        component["availability_mode"] = "all"
        # Home Assistant does not pass a device-level "qos" down to the entities: each
        # needs its own, or every command (Stop included) is sent at QoS 0.
        component["qos"] = QOS
    device: dict[str, Any] = {
        "identifiers": [f"gunctl_{device_id}"],
        "name": name,
        "manufacturer": manufacturer,
        "model": model,
    }
    if address is not None:
        device["connections"] = [["bluetooth", address]]
    if firmware:
        device["sw_version"] = firmware
    return {"dev": device, "o": dict(ORIGIN), "cmps": components}
