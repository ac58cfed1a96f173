"""Every MQTT topic gunctl publishes or subscribes to is named here, and only here.

With the default base ``gunctl`` and discovery prefix ``homeassistant``::

    gunctl/bridge/<node_id>/state        retained online/offline; offline is the last will
    gunctl/bridge/<node_id>/devices      retained JSON list of the device ids this node serves
    gunctl/bridge/<node_id>/diagnostics  retained JSON: rejected commands by reason, reconnects
    gunctl/bridge/<node_id>/set          commands for this node only ({"action": "stop_all"})
    gunctl/bridge/<node_id>/result       the result of each bridge command
    gunctl/bridge/set                    commands for every node
    gunctl/bridge/<node_id>/stop         stop every gun of this node (the stop line)
    gunctl/bridge/stop                   stop every gun of every node (the stop line)
    gunctl/<device_id>/availability      retained online/offline: the device's link
    gunctl/<device_id>/state             retained JSON state
    gunctl/<device_id>/telemetry         JSON at the configured rate
    gunctl/<device_id>/event             JSON, one message per session event
    gunctl/<device_id>/set               JSON commands
    gunctl/<device_id>/stop              any message stops the gun (the stop line)
    gunctl/<device_id>/result            JSON result of every command
    homeassistant/device/<device_id>/config   retained discovery payload
    homeassistant/status                 Home Assistant's own online/offline

``bridge`` is therefore not a valid device id.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# the grammar of ids and the base topic is the configuration's, which checks them
from gunctl.config import BRIDGE, SEGMENT

log = structlog.get_logger("gunctl.mqtt")

ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True)
class Topics:
    node_id: str
    base: str = "gunctl"
    discovery_prefix: str = "homeassistant"

    # -- the bridge (this node) ----------------------------------------------------

    @property
    def bridge_state(self) -> str:
        return f"{self.base}/{BRIDGE}/{self.node_id}/state"

    @property
    def bridge_devices(self) -> str:
        return f"{self.base}/{BRIDGE}/{self.node_id}/devices"

    @property
    def bridge_diagnostics(self) -> str:
        return f"{self.base}/{BRIDGE}/{self.node_id}/diagnostics"

    @property
    def bridge_diary(self) -> str:
        """The symptom diary's summary, real and simulated (retained)."""
        return f"{self.base}/{BRIDGE}/{self.node_id}/diary"

    @property
    def bridge_set(self) -> str:
        return f"{self.base}/{BRIDGE}/{self.node_id}/set"

    @property
    def bridge_result(self) -> str:
        return f"{self.base}/{BRIDGE}/{self.node_id}/result"

    @property
    def bridge_set_all(self) -> str:
        return f"{self.base}/{BRIDGE}/set"

    @property
    def bridge_stop(self) -> str:
        return f"{self.base}/{BRIDGE}/{self.node_id}/stop"

    @property
    def bridge_stop_all(self) -> str:
        return f"{self.base}/{BRIDGE}/stop"

    @property
    def any_bridge_state(self) -> str:
        return f"{self.base}/{BRIDGE}/+/state"

    @property
    def any_bridge_devices(self) -> str:
        return f"{self.base}/{BRIDGE}/+/devices"

    def bridge_state_of(self, node_id: str) -> str:
        return f"{self.base}/{BRIDGE}/{node_id}/state"

    # -- devices -------------------------------------------------------------------

    def availability(self, device_id: str) -> str:
        return f"{self.base}/{device_id}/availability"

    def state(self, device_id: str) -> str:
        return f"{self.base}/{device_id}/state"

    def telemetry(self, device_id: str) -> str:
        return f"{self.base}/{device_id}/telemetry"

    def event(self, device_id: str) -> str:
        return f"{self.base}/{device_id}/event"

    def set(self, device_id: str) -> str:
        return f"{self.base}/{device_id}/set"

    def stop(self, device_id: str) -> str:
        return f"{self.base}/{device_id}/stop"

    def result(self, device_id: str) -> str:
        return f"{self.base}/{device_id}/result"

    @property
    def any_set(self) -> str:
        return f"{self.base}/+/set"

    @property
    def any_availability(self) -> str:
        return f"{self.base}/+/availability"

    # -- Home Assistant ------------------------------------------------------------

    def discovery(self, device_id: str) -> str:
        return f"{self.discovery_prefix}/device/{device_id}/config"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    # -- answering where a command asks -------------------------------------------------

    def response(self, properties: Properties | None) -> tuple[str, Properties] | None:
        """Under MQTT 5, where a command asks for its result too, and with what correlation.

        None if it asks for none, or if it names a topic gunctl does not reply on: a
        wildcard, or one under gunctl's own or Home Assistant's topics.
        """
        topic = self.reply_topic(getattr(properties, "ResponseTopic", None))
        if topic is None:
            return None
        reply = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        correlation = getattr(properties, "CorrelationData", None)
        if correlation is not None:
            reply.CorrelationData = correlation
        return topic, reply

    def reply_topic(self, topic: str | None) -> str | None:
        """The response topic a command gave, if gunctl replies there: not a wildcard, and
        not under gunctl's own or Home Assistant's topics."""
        if not topic:
            return None
        owned = (f"{self.base}/", f"{self.discovery_prefix}/")
        if len(topic) > 256 or "+" in topic or "#" in topic or topic.startswith(owned):
            log.warning("response_topic_refused", topic=topic)
            return None
        return topic

    # -- reading a topic back ------------------------------------------------------

    def device_of(self, topic: str, leaf: str) -> str | None:
        """The device id in ``<base>/<device_id>/<leaf>``, or None if ``topic`` is not one."""
        prefix = f"{self.base}/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 2 or parts[1] != leaf or parts[0] == BRIDGE:
            return None
        return parts[0]

    def node_of(self, topic: str, leaf: str) -> str | None:
        """The node id in ``<base>/bridge/<node_id>/<leaf>``, or None."""
        prefix, suffix = f"{self.base}/{BRIDGE}/", f"/{leaf}"
        if not topic.startswith(prefix) or not topic.endswith(suffix):
            return None
        node = topic[len(prefix) : -len(suffix)]
        return node if SEGMENT.match(node) else None
