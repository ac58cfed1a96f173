"""Floods, both ways: junk never reaches the daemon; commands that outrun it are shed but a stop
never is; an outbox backed up keeps every event and stop result, keeps only the newest state, and
bounds answers."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from mqtthost import MOSQUITTO, Broker, running, watching
from paho.mqtt.enums import CallbackAPIVersion

from gunctl.config import ServeSettings
from gunctl.mqtt.client import Incoming
from gunctl.mqtt.commands import MAX_PAYLOAD
from gunctl.mqtt.outbox import ANSWERS_MAX, Outgoing, as_json
from gunctl.mqtt.payloads import REFUSED
from gunctl.mqtt.screen import WAITING
from gunctl.mqtt.tally import REFUSAL_ANSWERS_PER_S
from gunctl.requests import CommandError

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]
JUNK = 1000  # of each kind
BROKER_CONFIG = "max_queued_messages 0\n"  # keep all for a slow subscriber: the watcher sees all
PUBLISH = shutil.which("mosquitto_pub") or str(Path(MOSQUITTO).with_name("mosquitto_pub"))


def published_and_answered(broker: Broker, topic: str, lines: Path, answer: str) -> None:
    """In this thread: publish every line of ``lines`` to ``topic`` (QoS 1), then a command
    for a device nobody serves, and wait for its answer on ``answer``: the commands process
    answers that itself, so by then it has read everything before it."""
    answered = threading.Event()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="flood")
    client.on_subscribe = lambda *_: answered.set()
    client.on_message = lambda *_: answered.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.subscribe(answer, 1)
        assert answered.wait(10), "no subscription"
        answered.clear()
        target = ["-p", str(broker.port), "-q", "1", "-t", topic]
        with lines.open("rb") as stdin:
            subprocess.run([PUBLISH, *target, "-l"], stdin=stdin, check=True)
        marker = ["-p", str(broker.port), "-q", "1", "-t", answer.replace("/result", "/set")]
        subprocess.run([PUBLISH, *marker, "-m", "mark"], check=True)
        assert answered.wait(30), "the commands process never got to the end"
    finally:
        client.loop_stop()
        client.disconnect()


async def test_commands_past_the_bound_are_shed_and_counted_and_a_stop_behind_them_is_obeyed(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    async with running(make_settings()) as service:
        bridge = service.bridge
        topics = bridge.topics
        (device_id,) = service.daemon.slots
        junk = tmp_path / "junk.txt"
        # well-formed commands for the daemon's gun, so that the commands process hands
        # every one on: junk that is not a command never reaches the daemon (below)
        command = {"action": "confirm_head"}
        lines = [json.dumps({**command, "id": f"j{n}"}) for n in range(6 * WAITING)]
        lines.append(json.dumps({"action": "stop", "id": "last"}))
        junk.write_text("".join(line + "\n" for line in lines))
        async with watching(broker, topics, topics.result(device_id)) as watcher:
            # The event loop is held here, as a long stall would hold it: the commands
            # process goes on reading, and only it decides what waits and what is shed.
            publisher = threading.Thread(
                target=published_and_answered,
                args=(broker, topics.set(device_id), junk, topics.result("nobody")),
            )
            publisher.start()
            publisher.join(60)
            result = (
                await watcher.until(lambda m: m.json().get("id") == "last", timeout=30)
            ).json()
            assert result["action"] == "stop", result
        async with asyncio.timeout(10):  # the counts follow the commands
            while bridge.setline.taken + bridge.rejected["overloaded"] < len(lines):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        shed = bridge.rejected["overloaded"]
        assert shed > 0
        assert bridge.setline.taken + shed == len(lines), "a command was lost without a count"
        assert bridge.setline.most_waiting >= WAITING
        assert bridge.diagnostics()["rejected"]["overloaded"] == shed


async def test_junk_is_refused_in_the_commands_process_and_never_reaches_the_daemon(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    """A stranger's device, text that is not JSON, a payload too large: counted by the
    commands process, which hands the daemon's event loop nothing of it but the counts."""
    async with running(make_settings()) as service:
        bridge = service.bridge
        topics = bridge.topics
        (device_id,) = service.daemon.slots
        kinds = {
            "unknown_device": (topics.set("nobody"), json.dumps({"action": "stop"})),
            "not_json": (topics.set(device_id), "not json"),
            "too_large": (topics.set(device_id), "[" * MAX_PAYLOAD + "]" * MAX_PAYLOAD),
        }
        before, taken = bridge.rejected, bridge.setline.taken
        for n, (topic, line) in enumerate(kinds.values()):
            junk = tmp_path / f"junk-{n}.txt"
            junk.write_text((line + "\n") * JUNK)
            target = ["-p", str(broker.port), "-q", "1", "-t", topic]
            with junk.open("rb") as lines:
                publish = await asyncio.create_subprocess_exec(PUBLISH, *target, "-l", stdin=lines)
                assert await publish.wait() == 0
        counted: dict[str, int] = {}
        async with asyncio.timeout(20):
            while counted != dict.fromkeys(kinds, JUNK):
                await asyncio.sleep(0.05)
                counted = {reason: bridge.rejected[reason] - before[reason] for reason in kinds}
        assert bridge.setline.taken == taken, "junk reached the daemon's event loop"
        assert bridge.rejected["overloaded"] == 0
        diagnostics = bridge.diagnostics()
        assert diagnostics["guns"][device_id]["refused"] == 2 * JUNK
        assert sum(diagnostics["rejected"].values()) - sum(before.values()) == 3 * JUNK
        async with watching(broker, topics, topics.result(device_id)) as watcher:
            stop = await watcher.command(device_id, {"action": "stop"})
            assert stop["ok"], stop
        assert bridge.setline.taken == taken + 1


async def test_valid_starts_refused_in_a_flood_get_a_few_answers_and_all_are_counted(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    """Each start refused as busy while a session runs would be two messages out (a result and
    an event) for one in: a flood of them gets a few answers a second, and every one counted."""
    starts = 500
    async with running(make_settings()) as service:
        bridge = service.bridge
        topics = bridge.topics
        (device_id,) = service.daemon.slots
        patterns = (topics.result(device_id), topics.event(device_id))
        async with watching(broker, topics, *patterns) as watcher:
            assert (await watcher.command(device_id, {"action": "start", "protocol": "long"}))["ok"]
            busy_before, unanswered_before = bridge.rejected["busy"], bridge.intake.unanswered
            flood = tmp_path / "starts.txt"
            lines = (
                json.dumps({"action": "start", "protocol": "tiny", "id": n}) for n in range(starts)
            )
            flood.write_text("".join(line + "\n" for line in lines))
            began = time.monotonic()
            target = ["-p", str(broker.port), "-q", "1", "-t", topics.set(device_id)]
            with flood.open("rb") as stdin:
                publish = await asyncio.create_subprocess_exec(PUBLISH, *target, "-l", stdin=stdin)
                assert await publish.wait() == 0
            async with asyncio.timeout(20):
                while bridge.rejected["busy"] - busy_before < starts:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            took = time.monotonic() - began
            stop = await watcher.command(device_id, {"action": "stop", "id": "last"})
            assert stop["ok"], stop  # a stop's result is never rationed
        refused = [m.json() for m in watcher.on(topics.result(device_id))]
        answered = [r for r in refused if r.get("reason") == "busy"]
        events = [m.json() for m in watcher.on(topics.event(device_id))]
        assert len([e for e in events if e["type"] == REFUSED]) == len(answered)
        assert 1 <= len(answered) <= REFUSAL_ANSWERS_PER_S * (1 + took)
        unanswered = bridge.intake.unanswered - unanswered_before
        assert len(answered) + unanswered == starts, "a refusal was neither answered nor counted"
        assert bridge.diagnostics()["unanswered"] >= unanswered


async def test_a_refused_stop_is_answered_when_its_guns_ration_is_spent(
    broker: Broker, make_settings: Settings
) -> None:
    """Whoever sent a stop learns that it was refused (the gun offline, say), however many
    refusals of other commands went unanswered just before it."""
    refusals = REFUSAL_ANSWERS_PER_S + 10
    async with running(make_settings()) as service:
        intake, topics = service.bridge.intake, service.bridge.topics
        (device_id,) = service.daemon.slots
        result = topics.result(device_id)
        message = Incoming(topics.set(device_id), b"{}")
        offline = CommandError("offline", f"{device_id} is not connected")
        async with watching(broker, topics, result) as watcher:
            for n in range(refusals):  # the gun's ration of answers, spent
                intake.refuse(result, device_id, message, f"s{n}", "start", offline, taken=True)
            intake.refuse(result, device_id, message, "last", "stop", offline, taken=True)
            stop = (await watcher.until(lambda m: m.json().get("id") == "last")).json()
        assert (stop["action"], stop["reason"]) == ("stop", "offline")
        answered = [m for m in watcher.seen if m.json()["action"] == "start"]
        assert len(answered) < refusals  # the starts' ration held: the stop passed it


async def test_a_backed_up_outbox_keeps_events_and_stop_results_and_coalesces_telemetry(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        bridge = service.bridge
        topics = bridge.topics
        (device_id,) = service.daemon.slots
        answers, events = ANSWERS_MAX + 500, 300
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            # All of it at once, before the sender can take anything: a flood in one go.
            for n in range(answers):
                bridge.outbox.put(
                    Outgoing(topics.result(device_id), as_json({"id": f"a{n}"}), keep=False)
                )
                bridge.outbox.put(
                    Outgoing(topics.telemetry(device_id), as_json({"n": n}), qos=0, latest=True)
                )
                if n < events:
                    bridge.outbox.put(Outgoing(topics.event(device_id), as_json({"n": n})))
                if n % 100 == 0:
                    stop = {"id": f"s{n}", "action": "stop"}
                    bridge.outbox.put(Outgoing(topics.result(device_id), as_json(stop)))
            stats = bridge.outbox.stats()
            assert stats["dropped"] == 500
            assert stats["coalesced"] >= answers - 1
            await bridge.flushed(timeout=30)
            last = f"a{answers - 1}"  # put last: everything else came before it
            await watcher.until(
                lambda m: m.topic == topics.result(device_id) and m.json()["id"] == last
            )
            results = [m.json()["id"] for m in watcher.on(topics.result(device_id))]
            stops = [f"s{n}" for n in range(0, answers, 100)]
            kept = [f"a{n}" for n in range(answers - ANSWERS_MAX, answers)]
            assert [r for r in results if r.startswith("s")] == stops  # every one, in order
            assert [r for r in results if r.startswith("a")] == kept  # the newest, in order
            sent = [m.json() for m in watcher.on(topics.event(device_id))]
            assert [e["n"] for e in sent if "n" in e] == list(range(events))
            sent = [m.json() for m in watcher.on(topics.telemetry(device_id))]
            telemetry = [t["n"] for t in sent if "n" in t]
            assert answers - 1 in telemetry
            assert len(telemetry) < 20, "telemetry waits as its newest value only"
            diagnostics = await watcher.until(
                lambda m: (
                    m.topic == topics.bridge_diagnostics and m.json()["outbox"]["dropped"] == 500
                )
            )
            assert diagnostics.json()["outbox"]["answers_max"] == ANSWERS_MAX
