"""Stop wins, in order: whenever the last command taken for a gun is a stop, it ends stopped.

First the rule itself, on the daemon's command path with random interleavings of
commands from several clients and random gaps between them (so that a stop
lands while a start is being planned, recorded or handed over); then the same
through a real Mosquitto: one client publishing 200 x [start, confirm_head,
stop] in order, and several clients publishing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtthost import SIM_SPEC, Broker, running, watching

from gunctl.config import ServeSettings, load_settings
from gunctl.daemon import Daemon, DeviceSlot
from gunctl.lane import Result
from gunctl.logs import configure
from gunctl.mqtt.commands import parse_device_command
from gunctl.profiles.loader import load_catalogue
from gunctl.requests import STOPS, CommandError, DeviceCommand
from gunctl.store.history import History

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]

BODIES: dict[str, dict[str, Any]] = {
    "start": {"action": "start", "protocol": "long"},
    "start_tiny": {"action": "start", "protocol": "tiny", "side": "left"},
    "confirm_head": {"action": "confirm_head"},
    "pause": {"action": "pause"},
    "resume": {"action": "resume"},
    "skip": {"action": "skip"},
    "select": {"action": "select", "intensity_cap": 0.4},
    "stop": {"action": "stop"},
    "pain_stop": {"action": "pain_stop"},
}
# starts and head confirmations weigh more: they are what could set a motor going
WEIGHTED = ["start", "start", "start_tiny", "confirm_head", "confirm_head", *BODIES]
GAPS = [0.0, 0.0, 0.0, 0.0, 0.0005, 0.002, 0.01, 0.05]  # seconds after an arrival


def command(name: str) -> DeviceCommand:
    return parse_device_command(json.dumps(BODIES[name]).encode()).command


def assert_stopped(slot: DeviceSlot) -> None:
    device = slot.device
    assert device is not None
    assert device.supervisor.driver.setpoint.stopped, "the motor is set to run after a stop"
    assert device.sim is not None
    assert not device.sim.firmware.running, "the gun was told to run after a stop"


def assert_stopped_with_no_session(slot: DeviceSlot, history: History) -> None:
    assert_stopped(slot)
    assert slot.device is not None
    assert not slot.device.supervisor.running, "a session runs after the last command, a stop"
    assert [s.id for s in history.sessions() if s.status == "running"] == []


@contextlib.asynccontextmanager
async def daemon_with_one_gun(data: Path) -> AsyncIterator[tuple[Daemon, DeviceSlot, History]]:
    settings = load_settings(
        None,
        node_id="lane",
        devices={"sim": 1, "sim_spec": SIM_SPEC},
        red_flags_acknowledged=True,
        time_scale=40.0,
    )
    history = History(data / "history.sqlite3")
    daemon = Daemon(settings, history=history, catalogue=load_catalogue())
    daemon.start()
    try:
        await daemon.wait_connected(10)
        (slot,) = daemon.slots.values()
        yield daemon, slot, history
    finally:
        await daemon.aclose()


@st.composite
def interleavings(draw: st.DrawFn) -> list[tuple[int, str, float]]:
    """Commands from 2 to 4 clients, merged in a random order, with random gaps.

    Half the runs end with a ``stop`` or a ``pain_stop`` from one of the clients.
    """
    clients = draw(st.integers(2, 4))
    streams = [
        draw(st.lists(st.sampled_from(WEIGHTED), min_size=1, max_size=8)) for _ in range(clients)
    ]
    merged: list[tuple[int, str, float]] = []
    cursors = [0] * clients
    while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
        live = [n for n in range(clients) if cursors[n] < len(streams[n])]
        n = draw(st.sampled_from(live))
        merged.append((n, streams[n][cursors[n]], draw(st.sampled_from(GAPS))))
        cursors[n] += 1
    if draw(st.booleans()):  # half the runs end with a stop from some client
        merged.append((draw(st.integers(0, clients - 1)), draw(st.sampled_from(STOPS)), 0.0))
    return merged


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(arrivals=interleavings())
async def test_the_last_stop_wins_over_any_interleaving(
    arrivals: list[tuple[int, str, float]], profiles: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async with daemon_with_one_gun(tmp_path_factory.mktemp("lane")) as (daemon, slot, history):
        answers: list[asyncio.Future[Result]] = []
        for _, name, gap in arrivals:
            answers.append(daemon.submit(slot.device_id, command(name)))
            if gap:
                await asyncio.sleep(gap)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*answers, return_exceptions=True), timeout=30
        )
        for outcome in outcomes:  # every command is answered: a result or a clear refusal
            assert isinstance(outcome, dict | CommandError), outcome
        await asyncio.sleep(0.3)  # anything left over would have acted by now
        last = arrivals[-1][1]
        if last == "stop":
            assert_stopped_with_no_session(slot, history)
        elif last == "pain_stop":  # the motor stops; the session waits for the person
            assert_stopped(slot)
        # a refused start leaves no session row: one row per start that was answered ok
        started = [
            o
            for (_, name, _), o in zip(arrivals, outcomes, strict=True)
            if name.startswith("start")
        ]
        assert len(history.sessions()) == sum(isinstance(o, dict) for o in started)


async def test_a_stop_cancels_what_waits_and_what_follows_runs_after_it(
    profiles: Path, tmp_path: Path
) -> None:
    async with daemon_with_one_gun(tmp_path) as (daemon, slot, history):
        before = [daemon.submit(slot.device_id, command(n)) for n in ("start", "confirm_head")]
        stop = daemon.submit(slot.device_id, command("stop"))
        after = [daemon.submit(slot.device_id, command(n)) for n in ("start", "confirm_head")]
        outcomes = await asyncio.gather(*before, stop, *after, return_exceptions=True)
        *cancelled, stopped, started, confirmed = outcomes
        for outcome in cancelled:  # both were waiting when the stop arrived
            assert isinstance(outcome, CommandError), outcome
            assert outcome.reason == "cancelled"
        assert stopped == {}
        assert isinstance(started, dict), started
        assert isinstance(confirmed, dict), confirmed
        supervisor = slot.device.supervisor  # type: ignore[union-attr]
        assert supervisor.running  # the start after the stop runs after it
        assert [s.status for s in history.sessions()] == ["running"]  # the cancelled left none
        await daemon.submit(slot.device_id, command("stop"))
        assert slot.follower is not None
        await asyncio.wait_for(slot.follower, 5)  # the end is written
        assert_stopped_with_no_session(slot, history)


async def test_200_start_confirm_stop_in_order_end_stopped(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    async with running(make_settings(), tmp_path) as service:
        topics = service.bridge.topics
        (slot,) = service.daemon.slots.values()
        device_id = slot.device_id
        async with watching(broker, topics, topics.result(device_id)) as watcher:
            for n in range(200):
                for name in ("start", "confirm_head", "stop"):
                    body = json.dumps({**BODIES[name], "id": f"{n}-{name}"})
                    await watcher.client.publish(topics.set(device_id), body, qos=1)
            await watcher.until(lambda m: m.json()["id"] == "199-stop", timeout=60)
            await asyncio.sleep(0.5)
            assert_stopped_with_no_session(slot, service.daemon.history)
            results = [m.json() for m in watcher.seen]
            assert len({r["id"] for r in results}) == len(results)  # none answered twice
            # every command answered, or refused past its gun's ration of answers and counted
            assert len(results) + service.bridge.intake.unanswered == 600
            starts = [r for r in results if r["action"] == "start"]
            assert {r.get("reason") for r in starts if not r["ok"]} <= {"cancelled"}
            stops = [r for r in results if r["action"] == "stop"]
            assert len(stops) == 200  # a stop's result is never rationed
            assert all(r["ok"] for r in stops)
            # a start that did not run left no session row; every one that ran has ended
            sessions = service.daemon.history.sessions()
            assert len(sessions) == sum(r["ok"] for r in starts)
            assert {s.status for s in sessions} <= {"aborted"}


async def test_several_clients_at_once_the_last_taken_stop_wins(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    async with running(make_settings(), tmp_path) as service:
        topics = service.bridge.topics
        (slot,) = service.daemon.slots.values()
        taken: list[str] = []
        submit = service.daemon.submit

        def recording(device_id: str, command: DeviceCommand) -> asyncio.Future[Result]:
            taken.append(command.action)
            return submit(device_id, command)

        service.daemon.submit = recording  # type: ignore[method-assign]

        async def client(n: int) -> None:
            async with aiomqtt.Client(broker.host, broker.port) as mine:
                for i in range(60):
                    name = ("start", "confirm_head", "stop", "start_tiny", "confirm_head")[
                        (i + n) % 5
                    ]
                    await mine.publish(topics.set(slot.device_id), json.dumps(BODIES[name]), qos=1)
                await mine.publish(topics.set(slot.device_id), json.dumps(BODIES["stop"]), qos=1)

        async with watching(broker, topics, topics.result(slot.device_id)) as watcher:
            await asyncio.gather(*(client(n) for n in range(3)))
            async with asyncio.timeout(60):  # each answered, or past its ration and counted
                while len(watcher.seen) + service.bridge.intake.unanswered < 183:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert len(taken) == 183
        assert taken[-1] in STOPS  # every client ended with a stop, so the last taken is one
        assert_stopped_with_no_session(slot, service.daemon.history)


async def test_a_stop_on_the_stop_topic_gets_through_a_flood_on_set(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    """Junk fills the main connection's queue; the stop line carries the stop all the same."""
    async with running(make_settings(), tmp_path) as service:
        topics = service.bridge.topics
        (slot,) = service.daemon.slots.values()
        device_id = slot.device_id
        for name in ("start", "confirm_head"):
            await service.daemon.submit(device_id, command(name))
        lines = io.StringIO()
        configure(json=True, level="warning", stream=lines)
        try:
            async with (
                watching(broker, topics, topics.result(device_id)) as watcher,
                aiomqtt.Client(broker.host, broker.port) as flooder,
            ):
                for n in range(1500):  # more than the broker queues for one client
                    await flooder.publish(topics.set(device_id), b"junk %d" % n, qos=0)
                    await flooder.publish(topics.set("nobody"), b'{"action": "start"}', qos=0)
                await flooder.publish(topics.stop(device_id), b"stop now", qos=1)
                stopped = await watcher.until(
                    lambda m: m.json().get("action") == "stop", timeout=30
                )
                assert stopped.json()["ok"]
                assert stopped.json()["ignored"] == ["payload"]  # not JSON, a stop all the same
                assert_stopped(slot)
                await asyncio.sleep(1.0)  # the rest of the flood drains
        finally:
            configure(json=True, level="error")
        refused = service.bridge.rejected
        assert refused["not_json"] + refused["unknown_device"] > 0
        logged = [json.loads(line)["event"] for line in lines.getvalue().splitlines()]
        # refusals are logged in aggregate: a few lines, not one per message
        assert logged.count("command_rejected") <= 2, logged.count("command_rejected")
