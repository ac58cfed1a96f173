"""MQTT cannot raise intensity above the caps; SIGTERM stops the motors; SIGKILL leaves the will."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from mqtthost import Broker, running, watching

from gunctl.config import ServeSettings
from gunctl.mqtt.topics import Topics
from gunctl.profiles.loader import load_catalogue
from gunctl.specs.loader import get_spec
from gunctl.specs.messages import SetSpeed
from gunctl.specs.speed import setpoint_for

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]
GUNCTL = Path(sys.executable).with_name("gunctl")


# A protocol step can never ask for more than its muscle's cap (the loader refuses it), so
# with the configured cap at 1 the step and the muscle cap tie; at 0.2 the user's binds.
@pytest.mark.parametrize(("configured_cap", "binding"), [(1.0, "step"), (0.2, "user")])
async def test_mqtt_cannot_raise_intensity_above_the_caps(
    broker: Broker, make_settings: Settings, configured_cap: float, binding: str
) -> None:
    # the continuous-speed family, so the speed written shows the intensity exactly
    settings = make_settings(
        devices={"sim_spec": "gunctl-open"}, time_scale=5.0, intensity_cap=configured_cap
    )
    spec = get_spec("gunctl-open")
    muscle_cap = load_catalogue().muscles["piriformis"].intensity_cap
    ceiling = setpoint_for(min(muscle_cap, configured_cap), spec.capabilities).ppm
    async with running(settings) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        device = service.daemon.slots[device_id].device
        assert device is not None
        assert device.sim is not None
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            start = {"action": "start", "protocol": "piri", "side": "left", "intensity_cap": 1.0}
            result = await watcher.command(device_id, start)
            assert result["ok"], result
            assert result["intensity_cap"] == configured_cap  # clamped to the configured cap
            assert (await watcher.command(device_id, {"action": "confirm_head"}))["ok"]
            await watcher.state(device_id, lambda s: (s["step"] or {}).get("phase") == "hold")
            await asyncio.sleep(0.3)  # well into the hold, at full step intensity
            assert (await watcher.command(device_id, {"action": "stop"}))["ok"]
        plan_step = device.supervisor.session.plan.steps[0]  # type: ignore[union-attr]
        assert plan_step.binding == binding
        written = [c.command.ppm for c in device.sim.commands if isinstance(c.command, SetSpeed)]
        assert written, "the motor never ran"
        assert max(written) <= ceiling
        assert max(written) == setpoint_for(plan_step.intensity, spec.capabilities).ppm


async def _serve_process(broker: Broker, node: str, tmp_path: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "GUNCTL_RED_FLAGS_ACKNOWLEDGED": "true",
        "GUNCTL_DEVICES_SIM_SPEC": "basic-5level",
        "GUNCTL_TELEMETRY_HZ": "2",
    }
    return await asyncio.create_subprocess_exec(
        str(GUNCTL),
        "serve",
        "--sim", "1",
        "--mqtt-host", broker.host,
        "--mqtt-port", str(broker.port),
        "--node-id", node,
        "--time-scale", "10",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=(tmp_path / f"{node}.log").open("wb"),
    )  # fmt: skip


@pytest.mark.slow
async def test_sigterm_stops_the_motors_then_says_offline(
    broker: Broker, profiles: Path, tmp_path: Path
) -> None:
    node = "proc-term"
    topics = Topics(node)
    device_id = f"sim-{node}-1"
    async with watching(broker, topics, f"{topics.base}/#") as watcher:
        process = await _serve_process(broker, node, tmp_path)
        try:
            await watcher.until(
                lambda m: m.topic == topics.availability(device_id) and m.payload == b"online", 15
            )
            assert (await watcher.command(device_id, {"action": "start", "protocol": "long"}))["ok"]
            assert (await watcher.command(device_id, {"action": "confirm_head"}))["ok"]
            await watcher.state(device_id, lambda s: s["setpoint_ppm"] > 0)
            since = len(watcher.seen)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 15) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        aborted = await watcher.until(
            lambda m: m.topic == topics.event(device_id) and m.json()["type"] == "session_aborted",
            since=since,
        )
        assert aborted.json()["reason"] == "stopped"
        offline = await watcher.until(
            lambda m: m.topic == topics.availability(device_id) and m.payload == b"offline",
            since=since,
        )
        assert offline.retain or offline.payload == b"offline"
        await watcher.until(
            lambda m: m.topic == topics.bridge_state and m.payload == b"offline", since=since
        )
        # the last state the daemon published: motor stopped, no session
        state_topic = topics.state(device_id)
        states = [m.json() for m in watcher.seen[since:] if m.topic == state_topic and m.payload]
        assert states[-1]["running"] is False
        assert states[-1]["setpoint_ppm"] == 0
    assert b"Traceback" not in (tmp_path / f"{node}.log").read_bytes()


@pytest.mark.slow
async def test_sigkill_leaves_the_last_will(broker: Broker, profiles: Path, tmp_path: Path) -> None:
    node = "proc-kill"
    topics = Topics(node)
    async with watching(broker, topics, f"{topics.base}/#") as watcher:
        process = await _serve_process(broker, node, tmp_path)
        try:
            await watcher.until(
                lambda m: m.topic == topics.bridge_state and m.payload == b"online", 15
            )
            since = len(watcher.seen)
            process.kill()  # SIGKILL: no goodbye; the broker publishes the will
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        will = await watcher.until(lambda m: m.topic == topics.bridge_state, since=since)
        assert will.payload == b"offline"
    # and it is retained: a newcomer sees the bridge offline
    async with watching(broker, topics, topics.bridge_state) as newcomer:
        seen = await newcomer.first(topics.bridge_state)
        assert seen.retain
        assert seen.payload == b"offline"
