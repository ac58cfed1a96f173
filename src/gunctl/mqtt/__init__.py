"""The MQTT side of ``gunctl serve``: topic names, command models, discovery, the bridge.

- :mod:`gunctl.mqtt.topics` names every topic, and is the only module that does;
- :mod:`gunctl.mqtt.commands` turns a payload into a typed command, or a clear refusal;
- :mod:`gunctl.mqtt.payloads` builds what is published (state, telemetry, results);
- :mod:`gunctl.mqtt.discovery` builds the Home Assistant device discovery payload;
- :mod:`gunctl.mqtt.bridge` keeps the broker connection and moves messages both ways.
"""
