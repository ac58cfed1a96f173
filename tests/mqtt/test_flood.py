"""Floods, both ways: junk that outruns the event loop is shed but a stop never is; an outbox
backed up keeps every event and stop result, keeps only the newest state, and bounds answers."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mqtthost import MOSQUITTO, Broker, running, watching

from gunctl.config import ServeSettings
from gunctl.mqtt.commands import MAX_PAYLOAD
from gunctl.mqtt.handoff import BOUND
from gunctl.mqtt.outbox import ANSWERS_MAX, Outgoing, as_json
from gunctl.mqtt.tally import BACKLOG

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]
BROKER_CONFIG = "max_queued_messages 0\n"  # keep all for a slow subscriber: the watcher sees all
PUBLISH = shutil.which("mosquitto_pub") or str(Path(MOSQUITTO).with_name("mosquitto_pub"))


async def test_junk_past_the_bound_is_shed_and_counted_and_a_stop_behind_it_is_obeyed(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    async with running(make_settings()) as service:
        bridge = service.bridge
        topics = bridge.topics
        (device_id,) = service.daemon.slots
        junk = tmp_path / "junk.txt"
        # well-formed commands, so that the network thread hands every one on: junk that
        # is not a command never reaches the hand-off (test_junk_is_refused_in_...)
        command = {"action": "confirm_head"}
        junk.write_text(
            "".join(json.dumps({**command, "id": f"j{n}"}) + "\n" for n in range(3 * BOUND))
        )
        received = bridge.handoff

        def flood() -> None:
            target = ["-p", str(broker.port), "-q", "1", "-t", topics.set(device_id)]
            with junk.open("rb") as lines:
                subprocess.run([PUBLISH, *target, "-l"], stdin=lines, check=True)
            seen, quiet_since = -1, time.monotonic()
            while time.monotonic() - quiet_since < 0.2:  # the broker has passed on all it will
                now = received.shed + len(received)
                if now != seen:
                    seen, quiet_since = now, time.monotonic()
                time.sleep(0.01)
            stop = json.dumps({"action": "stop", "id": "last"})
            target = ["-p", str(broker.port), "-q", "1", "-t", topics.set(device_id)]
            subprocess.run([PUBLISH, *target, "-m", stop], check=True)

        async with watching(broker, topics, topics.result(device_id)) as watcher:
            # The event loop is held here, as a long stall would hold it: the network
            # thread goes on reading, and only it decides what waits and what is shed.
            publisher = threading.Thread(target=flood)
            publisher.start()
            publisher.join(30)
            deadline = time.monotonic() + 10
            while len(received) <= BOUND and time.monotonic() < deadline:
                time.sleep(0.01)  # noqa: ASYNC251  (held on purpose; the stop goes past the bound)
            assert len(received) == BOUND + 1, "the stop was shed, or never came"
            assert received.shed > 0
            result = (
                await watcher.until(lambda m: m.json().get("id") == "last", timeout=30)
            ).json()
            assert result["action"] == "stop", result
        assert bridge.rejected["overloaded"] == received.shed
        assert bridge.diagnostics()["rejected"]["overloaded"] == received.shed


async def test_junk_is_refused_in_the_network_thread_and_never_waits_for_the_event_loop(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    """A stranger's device, text that is not JSON, a payload too large: counted as they
    come in, though the event loop is held; only the few to be answered wait for it."""
    async with running(make_settings()) as service:
        bridge = service.bridge
        topics = bridge.topics
        (device_id,) = service.daemon.slots
        kinds = {
            "unknown_device": (topics.set("nobody"), json.dumps({"action": "stop"})),
            "not_json": (topics.set(device_id), "not json"),
            "too_large": (topics.set(device_id), "[" * MAX_PAYLOAD + "]" * MAX_PAYLOAD),
        }
        before = bridge.rejected
        received = bridge.handoff

        def flood() -> None:
            for n, (topic, line) in enumerate(kinds.values()):
                junk = tmp_path / f"junk-{n}.txt"
                junk.write_text((line + "\n") * BOUND)
                target = ["-p", str(broker.port), "-q", "1", "-t", topic]
                with junk.open("rb") as lines:
                    subprocess.run([PUBLISH, *target, "-l"], stdin=lines, check=True)

        # The event loop is held, as a long stall would hold it: the counts still move.
        publisher = threading.Thread(target=flood)
        publisher.start()
        publisher.join(30)
        deadline = time.monotonic() + 10
        counted: dict[str, int] = {}
        while time.monotonic() < deadline and counted != dict.fromkeys(kinds, BOUND):
            time.sleep(0.01)  # noqa: ASYNC251  (held on purpose)
            counted = {reason: bridge.rejected[reason] - before[reason] for reason in kinds}
        assert counted == dict.fromkeys(kinds, BOUND)
        assert len(received) <= BACKLOG + 1, "junk waited for the event loop"
        assert received.shed == 0
        await bridge.flushed(timeout=10)
        diagnostics = bridge.diagnostics()
        assert diagnostics["guns"][device_id]["refused"] == 2 * BOUND
        assert sum(diagnostics["rejected"].values()) - sum(before.values()) == 3 * BOUND
        async with watching(broker, topics, topics.result(device_id)) as watcher:
            stop = await watcher.command(device_id, {"action": "stop"})
            assert stop["ok"], stop


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
