"""The commands process: it reads the ``set`` topics for the daemon, and when it dies the
daemon notices, the stop line still stops, and another process takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest
from mqtthost import Broker, is_event, running, the_gun, watching

from gunctl.config import ServeSettings
from gunctl.mqtt.screen import NICENESS

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]


async def test_a_command_on_set_goes_through_the_commands_process_to_the_gun(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        bridge = service.bridge
        topics = bridge.topics
        device_id, supervisor = the_gun(service)
        assert bridge.setline.pid not in (None, os.getpid())
        # below the daemon's priority: in a flood, the control loops come first
        below = min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
        assert os.getpriority(os.PRIO_PROCESS, bridge.setline.pid) == below
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            started = await watcher.command(device_id, {"action": "start", "protocol": "long"})
            assert started["ok"], started
            assert supervisor.running
            assert bridge.setline.taken == 1
            diagnostics = await watcher.until(
                lambda m: m.topic == topics.bridge_diagnostics and m.json()["commands"] == 1
            )
            assert diagnostics.json()["set_line"]["connected"]
            stopped = await watcher.command(device_id, {"action": "stop"})
            assert stopped["ok"], stopped
            assert not supervisor.running


async def test_the_commands_process_dying_is_noticed_the_stop_line_stops_and_it_comes_back(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        bridge = service.bridge
        topics = bridge.topics
        device_id, supervisor = the_gun(service)
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            assert (await watcher.command(device_id, {"action": "start", "protocol": "long"}))["ok"]
            assert (await watcher.command(device_id, {"action": "confirm_head"}))["ok"]
            await watcher.until(is_event(watcher, device_id, "step_started"))

            first = bridge.setline.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            async with asyncio.timeout(10):
                while bridge.setline.connected.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            # nothing reads set now; a stop on the stop topic still stops the gun
            since = len(watcher.seen)
            await watcher.client.publish(topics.stop(device_id), b'{"id": "s1"}', qos=1)
            result = await watcher.until(
                lambda m: m.topic == topics.result(device_id) and m.json().get("id") == "s1",
                since=since,
            )
            assert result.json()["ok"], result.json()
            assert not supervisor.running
            assert supervisor.driver.setpoint.stopped

            await asyncio.wait_for(bridge.setline.connected.wait(), 20)
            assert bridge.setline.pid not in (None, first)
            assert bridge.setline.restarts == 1
            assert bridge.diagnostics()["set_line"]["restarts"] == 1
            started = await watcher.command(device_id, {"action": "start", "protocol": "long"})
            assert started["ok"], started
            assert supervisor.running
            assert (await watcher.command(device_id, {"action": "stop"}))["ok"]


async def test_the_commands_process_ends_with_the_daemon(
    broker: Broker, make_settings: Settings
) -> None:
    async with running(make_settings()) as service:
        pid = service.bridge.setline.pid
        assert pid is not None
    with pytest.raises(ProcessLookupError):  # ended and reaped, not left behind
        os.kill(pid, 0)


@pytest.mark.parametrize(
    ("first_line", "said"),
    [
        (b"not the settings\n", b"is started by gunctl serve"),
        (  # a broker that refuses: the daemon starts another process after a back-off
            b'{"mqtt": {"host": "127.0.0.1", "port": 1}, "node_id": "n", "identifier": "n-set",'
            b' "instance": "i", "devices": ["gun"]}\n',
            b"set_line_connect_failed",
        ),
    ],
)
def test_the_commands_process_ends_with_one_line_not_a_traceback(
    first_line: bytes, said: bytes
) -> None:
    ended = subprocess.run(
        [sys.executable, "-m", "gunctl.mqtt.screen"],
        input=first_line,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert ended.returncode == 1
    assert said in ended.stderr + ended.stdout
    assert b"Traceback" not in ended.stderr
