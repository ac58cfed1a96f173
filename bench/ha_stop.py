"""Stop pressed in Home Assistant: from the button press to the stop frame written.

A private Mosquitto, a real Home Assistant core (``scripts/bootstrap-ha``) with
its MQTT integration, and ``gunctl serve``'s daemon and bridge in this process
with one simulated gun in real time. Each sample starts a session, waits for
the motor to run, and presses Stop: through Home Assistant's REST API
(``button.press``, which publishes to the gun's stop topic), or, in the same
run and alternating with it, by publishing the stop to that topic directly
from a plain MQTT client. The time is taken from the moment the press (or the
publish) is sent to the moment the gun's link is handed the stop frame. The
difference is what Home Assistant itself adds: its HTTP API, its service call
and its MQTT client.

    python -m bench.ha_stop [--samples 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from bench.homeassistant import HomeAssistant, find_python
from bench.mqtt_stop import SPEC, StopTimes, mosquitto, serving, start_all
from bench.report import percentiles, report
from gunctl.logs import configure


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(hass: HomeAssistant, port: int, samples: int) -> dict[str, list[float]]:
    timer = StopTimes()
    pressed: list[float] = []
    published: list[float] = []
    async with serving(port, "habench", 1) as service:
        (slot,) = service.daemon.slots.values()
        timer.watch(slot)
        stop = f"gunctl_{slot.device_id}_stop"
        button = (await hass.entity_ids({stop}, timeout=30))[stop]
        await hass.until_state(button, lambda s: s != "unavailable")
        topic = service.bridge.topics.stop(slot.device_id)
        async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
            while len(pressed) < samples or len(published) < samples:
                await start_all(service, [slot])
                await asyncio.sleep(0.1)
                times = timer.at[slot.device_id]
                before = len(times)
                timer.arrived[slot.device_id].clear()
                through_ha = len(pressed) <= len(published)
                asked = time.perf_counter()
                if through_ha:
                    await hass.call("button", "press", entity_id=button)
                else:
                    await client.publish(topic, json.dumps({"action": "stop"}), qos=1)
                await asyncio.wait_for(timer.arrived[slot.device_id].wait(), 5)
                (pressed if through_ha else published).append(times[before] - asked)
                await asyncio.sleep(0.05)
    return {"ha": pressed[:samples], "mqtt": published[:samples]}


async def main(samples: int) -> None:
    configure(level="error")
    python = find_python()
    if python is None:
        raise SystemExit("bench.ha_stop: no Python 3.13 here to run Home Assistant with")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GUNCTL_DATA_DIR"] = tmp
        with mosquitto(Path(tmp)) as port:
            hass = HomeAssistant(python, Path(tmp) / "homeassistant", _free_port())
            hass.start()
            try:
                await hass.setup("127.0.0.1", port)
                result = await measure(hass, port, samples)
            finally:
                hass.stop()
    rows: list[dict[str, Any]] = [
        {"path": "Stop pressed in Home Assistant -> stop frame", **percentiles(result["ha"])},
        {"path": "stop published on the stop topic -> stop frame", **percentiles(result["mqtt"])},
    ]
    report(
        "ha_stop",
        "Stop latency in ms through a real Home Assistant, beside a plain MQTT publish",
        rows,
        meta={"spec": SPEC, "samples": samples, "home_assistant": "2025.4.4", "qos": 1},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50, help="stops measured per path")
    args = parser.parse_args()
    asyncio.run(main(args.samples))
