"""Small promises of gunctl serve that a person notices when they are broken.

stop_all on the shared bridge topic runs once; telemetry carries fault flags as
a JSON list; a clean shutdown leaves a retained state that says disconnected;
serve warns at start when the warning signs are not acknowledged; a BLE name
nobody advertises is given up on, and a session's end reason survives a start
right after it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from mqtthost import Broker, logged_at_start, running, watching

from gunctl.clock import Clock
from gunctl.config import ServeSettings, load_settings
from gunctl.daemon import Backoff, Daemon, DeviceSlot
from gunctl.devices import Device
from gunctl.errors import DeviceNotFoundError
from gunctl.mqtt.commands import parse_device_command
from gunctl.mqtt.topics import Topics
from gunctl.profiles.loader import load_catalogue
from gunctl.store.history import History

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]


async def test_stop_all_on_the_shared_topic_runs_once(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        topics = service.bridge.topics
        async with watching(broker, topics, topics.bridge_result) as watcher:
            await watcher.client.publish(topics.bridge_set_all, '{"action": "stop_all"}', qos=1)
            await watcher.first(topics.bridge_result)
            await asyncio.sleep(0.3)
            assert len(watcher.seen) == 1
            assert service.bridge.intake.commands == 1


async def test_telemetry_carries_fault_flags_as_a_list(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, topics.telemetry(device_id)) as watcher:
            message = await watcher.first(topics.telemetry(device_id))
            assert b"frozenset" not in message.payload
            values = message.json()
            assert isinstance(values.get("faults", []), list), values


async def test_a_clean_shutdown_leaves_a_state_that_says_disconnected(
    broker: Broker, make_settings: Settings
) -> None:
    settings = make_settings()
    topics = Topics(settings.node_id)
    (device_id,) = settings.device_ids()
    async with running(settings):
        pass
    async with watching(broker, topics, topics.state(device_id)) as watcher:
        state = (await watcher.first(topics.state(device_id))).json()
        assert state["connected"] is False
        assert state["running"] is False


async def test_serve_warns_at_start_when_the_warning_signs_are_not_acknowledged(
    broker: Broker, make_settings: Settings
) -> None:
    logged = await logged_at_start(make_settings(red_flags_acknowledged=False), "warning")
    (warning,) = [e for e in logged if e["event"] == "red_flags_not_acknowledged"]
    assert warning["level"] == "warning"
    assert "red_flags_acknowledged = true" in warning["message"]


async def test_a_ble_name_nobody_advertises_is_given_up_on(tmp_path: Path) -> None:
    settings = load_settings(
        None, node_id="solo", devices={"ble": ["not-an-address", "C4:5A:11:20:3B:7E"]}
    )
    attempts: dict[str, int] = {}

    async def nowhere(slot: DeviceSlot) -> Device:
        attempts[slot.target] = attempts.get(slot.target, 0) + 1
        raise DeviceNotFoundError(f"no device advertised {slot.target!r}")

    daemon = Daemon(
        settings,
        clock=Clock(),
        history=History(tmp_path / "history.sqlite3"),
        catalogue=load_catalogue(),
        connector=nowhere,
        backoff=Backoff(first_s=0.01, cap_s=0.02),
    )
    daemon.start()
    try:
        name, address = daemon.slots.values()
        assert name.task is not None
        await asyncio.wait_for(name.task, 5)  # it ends by itself
        assert attempts["not-an-address"] == 5
        assert name.problem is not None
        assert "given up after 5 attempts" in name.problem
        await asyncio.sleep(0.3)
        assert address.problem is None  # an address is looked for again and again
        assert attempts["C4:5A:11:20:3B:7E"] > 5
    finally:
        await daemon.aclose()


async def test_a_start_right_after_an_end_keeps_that_end_reason(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    async with running(make_settings(), tmp_path) as service:
        (slot,) = service.daemon.slots.values()
        daemon = service.daemon

        def command(body: dict[str, str]) -> asyncio.Future[dict[str, object]]:
            return daemon.submit(
                slot.device_id, parse_device_command(json.dumps(body).encode()).command
            )

        await command({"action": "start", "protocol": "long"})
        for _ in range(5):
            await command({"action": "confirm_head"})
            stop = command({"action": "stop"})
            start = command({"action": "start", "protocol": "long"})  # within a tick of the end
            await asyncio.gather(stop, start)
        await command({"action": "stop"})
        assert slot.follower is not None
        await asyncio.wait_for(slot.follower, 5)
    with History(tmp_path / "history.sqlite3") as history:
        sessions = history.sessions()
    assert len(sessions) == 6
    assert {(s.status, s.end_reason) for s in sessions} == {("aborted", "stopped")}
