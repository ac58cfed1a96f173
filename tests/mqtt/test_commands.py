"""Every kind of bad command is refused with a clear error, counted, and changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from mqtthost import Broker, running, the_gun, watching
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gunctl.config import ServeSettings
from gunctl.mqtt.commands import MAX_PAYLOAD

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]

BAD: list[tuple[str, Any, str, str]] = [
    # (what, payload, reason, words the error must contain)
    ("too large", b'{"action": "stop", "x": "' + b"a" * MAX_PAYLOAD + b'"}', "too_large", "bytes"),
    ("not JSON", b"start glute please", "not_json", "not JSON"),
    ("not an object", b'["start"]', "not_json", "JSON object"),
    ("not UTF-8", b"\xff\xfe{", "not_json", "not JSON"),
    ("no action", {"protocol": "tiny"}, "invalid", "no action"),
    ("unknown action", {"action": "turbo"}, "invalid", "unknown action 'turbo'"),
    ("unknown field", {"action": "start", "protocol": "tiny", "speed": 9000}, "invalid", "'speed'"),
    (
        "cap above 1",
        {"action": "start", "protocol": "tiny", "intensity_cap": 1.5},
        "invalid",
        "intensity_cap",
    ),
    (
        "cap of 0",
        {"action": "start", "protocol": "tiny", "intensity_cap": 0},
        "invalid",
        "intensity_cap",
    ),
    ("cap not a number", {"action": "start", "intensity_cap": "max"}, "invalid", "intensity_cap"),
    ("cap a boolean", {"action": "start", "intensity_cap": True}, "invalid", "intensity_cap"),
    ("cap a string", {"action": "start", "intensity_cap": "0.25"}, "invalid", "intensity_cap"),
    ("id a boolean", {"action": "start", "protocol": "tiny", "id": True}, "invalid", "id"),
    ("nested deeply", b"[" * 3000 + b"]" * 1000, "not_json", "nested too deeply"),
    ("unknown side", {"action": "start", "protocol": "tiny", "side": "middle"}, "invalid", "side"),
    ("unknown protocol", {"action": "start", "protocol": "glutes"}, "unknown_protocol", "'glutes'"),
    ("select unknown", {"action": "select", "protocol": "nope"}, "unknown_protocol", "'nope'"),
    ("nothing running", {"action": "pause"}, "refused", "no session"),
]


async def test_bad_commands_are_refused_counted_and_change_nothing(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        slot = service.daemon.slots[device_id]
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            for what, payload, reason, words in BAD:
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                if not isinstance(payload, bytes) and "id" not in payload:
                    body = json.dumps({**payload, "id": what}).encode()
                since = len(watcher.seen)
                await watcher.client.publish(topics.set(device_id), body, qos=1)
                message = await watcher.until(
                    lambda m: m.topic == topics.result(device_id), since=since
                )
                result = message.json()
                assert result["ok"] is False, what
                assert result["reason"] == reason, (what, result)
                assert words in result["error"], (what, result["error"])
                if not isinstance(payload, bytes) and "action" in payload and reason != "invalid":
                    assert result["id"] == what
                if not isinstance(payload, bytes) and payload.get("action") in ("start", "select"):
                    assert result["action"] == payload["action"], (what, result)
                assert not slot.device.supervisor.running, what  # type: ignore[union-attr]
            assert slot.device is not None
            assert slot.device.sim is not None
            assert all(
                c.command.kind in ("stop", "keepalive", "status_request", "version_request")
                for c in slot.device.sim.commands
            )

            # the counters say what was refused, by reason, in the retained diagnostics
            expected: dict[str, int] = {}
            for _, _, reason, _ in BAD:
                expected[reason] = expected.get(reason, 0) + 1
            diagnostics = await watcher.until(
                lambda m: (
                    m.topic == topics.bridge_diagnostics
                    and all(m.json()["rejected"][r] == n for r, n in expected.items())
                )
            )
            assert diagnostics.retain or diagnostics.json()["node"] == service.settings.node_id
            loop = diagnostics.json()["guns"][device_id]  # the gun's control loop, as it runs
            assert loop["ticks"] > 0
            assert loop["frames"] > 0
            assert {
                "overruns",
                "max_late_ms",
                "decode_errors",
                "out_of_order",
                "coalesced",
            } <= loop.keys()
            assert loop["refused"] == len(BAD)  # every one of them, counted against this gun
            assert loop["commands"] == 3  # taken in turn: the unknown protocol and select, pause

            # still serving: a good start works, and a second start while it runs is refused
            good = await watcher.command(device_id, {"action": "start", "protocol": "tiny"})
            assert good["ok"], good
            busy = await watcher.command(device_id, {"action": "start", "protocol": "piri"})
            assert busy["ok"] is False
            assert busy["reason"] == "busy"
            assert "already running" in busy["error"]
            state = await watcher.state(device_id, lambda s: s["running"])
            assert state["protocol"] == "tiny"  # the refused start changed nothing
            stop = await watcher.command(device_id, {"action": "stop"})
            assert stop["ok"]
            await watcher.state(device_id, lambda s: not s["running"])
            assert watcher.events(device_id)[-1] == "session_aborted"


async def test_a_stop_with_stray_fields_still_stops_and_says_what_it_ignored(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        topics = service.bridge.topics
        device_id, supervisor = the_gun(service)
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            for stop in (
                {"action": "stop", "speed": 0, "id": "s1"},
                {"action": "stop", "id": "x" * 500},
                {"action": "pain_stop", "id": {"not": "an id"}},  # last: it blocks the muscle
            ):
                assert (await watcher.command(device_id, {"action": "start", "protocol": "long"}))[
                    "ok"
                ]
                assert (await watcher.command(device_id, {"action": "confirm_head"}))["ok"]
                since = len(watcher.seen)
                await watcher.client.publish(topics.set(device_id), json.dumps(stop), qos=1)
                result = (await watcher.first(topics.result(device_id), since)).json()
                assert result["ok"], result
                assert result["action"] == stop["action"]
                assert result["ignored"] == (["speed"] if "speed" in stop else ["id"])
                assert supervisor.driver.setpoint.stopped
                if stop["action"] == "stop":
                    await watcher.state(device_id, lambda s: not s["running"])
                else:
                    assert (await watcher.command(device_id, {"action": "stop"}))["ok"]


async def test_a_device_nobody_serves_gets_one_answer(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        topics = service.bridge.topics
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            result = await watcher.command("gun-nobody-has", {"action": "stop"})
            assert result == {
                "id": result["id"],
                "ok": False,
                "device": "gun-nobody-has",
                "action": "stop",
                "error": result["error"],
                "reason": "unknown_device",
            }
            assert "no gunctl instance serves" in result["error"]
            await asyncio.sleep(0.3)
            assert len(watcher.on(topics.result("gun-nobody-has"))) == 1
            assert service.bridge.rejected["unknown_device"] == 1


async def test_starts_refused_until_red_flags_are_acknowledged(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings(red_flags_acknowledged=False)) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            result = await watcher.command(device_id, {"action": "start", "protocol": "tiny"})
            assert result["ok"] is False
            assert result["reason"] == "red_flags_not_acknowledged"
            for words in (
                "bladder or bowel",
                "saddle",
                "foot drop",
                "fever",
                "trauma",
                "not medical advice",
                "red_flags_acknowledged",
            ):
                assert words in result["error"]
            device = service.daemon.slots[device_id].device
            assert device is not None
            assert not device.supervisor.running
            # stopping is never refused
            assert (await watcher.command(device_id, {"action": "stop"}))["ok"]


async def test_a_person_confirms_the_warning_signs_before_each_start(
    broker: Broker, make_settings: Settings
) -> None:
    settings = make_settings(red_flags_acknowledged=False, red_flags_confirmation_s=300)
    async with running(settings) as service:
        now = [1000.0]
        service.daemon.person_clock = lambda: now[0]
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        start = {"action": "start", "protocol": "long"}
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            confirmed = await watcher.command(device_id, {"action": "confirm_no_red_flags"})
            assert confirmed["ok"]
            assert confirmed["valid_s"] == 300
            assert (await watcher.command(device_id, start))["ok"]
            assert (await watcher.command(device_id, {"action": "stop"}))["ok"]

            # one confirmation, one session
            again = await watcher.command(device_id, start)
            assert again["reason"] == "red_flags_not_acknowledged"
            assert again["error"].startswith("first confirm that none of the warning signs")

            # and only for a while
            assert (await watcher.command(device_id, {"action": "confirm_no_red_flags"}))["ok"]
            now[0] += 301
            late = await watcher.command(device_id, start)
            assert late["reason"] == "red_flags_not_acknowledged"
            device = service.daemon.slots[device_id].device
            assert device is not None
            assert not device.supervisor.running


async def test_select_then_start_and_mqtt5_response_topic(
    broker: Broker, make_settings: Settings
) -> None:
    """Home Assistant's select and number feed the same command path as any client."""
    async with running(make_settings()) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, f"{topics.base}/#", "replies/#") as watcher:
            for body in (
                {"action": "select", "protocol": "tiny"},
                {"action": "select", "intensity_cap": 0.4},
            ):
                assert (await watcher.command(device_id, body))["ok"]
            state = await watcher.state(device_id, lambda s: s["selected"]["intensity_cap"] == 0.4)
            assert state["selected"] == {"protocol": "tiny", "side": "both", "intensity_cap": 0.4}

            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = "replies/me"
            properties.CorrelationData = b"\x01req-7"
            await watcher.client.publish(
                topics.set(device_id), json.dumps({"action": "start"}), qos=1, properties=properties
            )
            reply = await watcher.until(lambda m: m.topic == "replies/me")
            assert reply.properties.CorrelationData == b"\x01req-7"
            body = reply.json()
            assert body["ok"], body
            assert (body["protocol"], body["intensity_cap"], body["side"]) == ("tiny", 0.4, "both")
            assert (await watcher.command(device_id, {"action": "pause"}))["ok"]
            assert (await watcher.state(device_id, lambda s: s["paused"]))["running"]
            assert (await watcher.command(device_id, {"action": "resume"}))["ok"]
            assert (await watcher.command(device_id, {"action": "pain_stop"}))["ok"]
            assert "pain_reported" in watcher.events(device_id)
            assert (await watcher.command(device_id, {"action": "stop"}))["ok"]
