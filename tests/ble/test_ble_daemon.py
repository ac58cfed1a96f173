"""The ``gunctl serve`` daemon keeping a gun connected through the real connect_ble and fake BlueZ.

No broker is needed: a subscriber stands where the MQTT bridge would, and hears
the links come and go and the session's events, as the bridge does.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gunctl.config import load_settings
from gunctl.control.events import Event
from gunctl.daemon import Backoff, Daemon, DeviceSlot
from gunctl.heads import Head
from gunctl.mqtt.payloads import device_state
from gunctl.profiles.loader import load_catalogue
from gunctl.requests import SessionCommand, StartCommand
from gunctl.store.history import History

from blehost import SHORT, Guns, eventually

pytestmark = pytest.mark.ble


class Recorder:
    """What the MQTT bridge would be told: links coming and going, and every event."""

    def __init__(self) -> None:
        self.links: list[bool] = []
        self.events: list[Event] = []
        self.connected_states: list[bool] = []  # the state document's ``connected`` at each change

    def on_event(self, slot: DeviceSlot, event: Event) -> None:
        self.events.append(event)

    def on_link(self, slot: DeviceSlot, online: bool) -> None:
        self.links.append(online)
        self.connected_states.append(device_state(slot)["connected"])

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]


async def test_the_daemon_reconnects_a_dropped_gun_and_the_session_stays_aborted(
    guns: Guns, tmp_path: Path
) -> None:
    started = time.monotonic()
    peripheral = guns.named["basic-5level"]
    gun = peripheral.device
    settings = load_settings(
        None,
        node_id="bench",
        devices={"sim": 0, "ble": [peripheral.address]},
        red_flags_acknowledged=True,
    )
    daemon = Daemon(
        settings,
        clock=guns.clock,
        history=History(tmp_path / "history.sqlite3"),
        catalogue=load_catalogue(None),
        backoff=Backoff(first_s=0.2, cap_s=0.4),
    )
    recorder = Recorder()
    daemon.subscribe(recorder)
    (slot,) = daemon.slots.values()
    daemon.start()
    try:
        await daemon.wait_connected(SHORT)
        first = slot.device
        assert first is not None
        assert first.ble is not None  # the real BLE path, not a stand-in
        assert slot.spec is not None
        assert slot.spec.name == "basic-5level"
        assert device_state(slot)["rssi"] == first.rssi
        assert first.rssi is not None
        # what Home Assistant names the gun after and joins it to its own Bluetooth by
        assert first.advertised == (peripheral.name, peripheral.address)

        await daemon.execute(
            slot.device_id, StartCommand(action="start", protocol="glute", side="left")
        )
        await eventually(lambda: bool(recorder.of("head_change_required")))
        (asked,) = recorder.of("head_change_required")
        gun.fit_head(Head(asked.step.head))  # type: ignore[attr-defined]
        await daemon.execute(slot.device_id, SessionCommand(action="confirm_head"))
        await eventually(lambda: bool(recorder.of("step_started")))
        await eventually(lambda: gun.state.running and gun.state.speed_ppm > 0)

        peripheral.drop(device_notices_after=0.0)  # out of range, abruptly
        await eventually(lambda: recorder.links[-1:] == [False], 1.0)
        assert not slot.connected
        assert device_state(slot)["connected"] is False
        (stop,) = recorder.of("safety_stop")
        assert stop.rule == "link_lost"  # type: ignore[attr-defined]
        (aborted,) = recorder.of("session_aborted")
        assert aborted.reason == "link_lost"  # type: ignore[attr-defined]

        # the back-off, then the same real path again
        await daemon.wait_connected(SHORT)
        assert recorder.links == [True, False, True]
        assert recorder.connected_states == [True, False, True]
        assert slot.device is not first
        assert slot.device is not None
        assert slot.device.ble is not None
        assert slot.connects == 2
        assert device_state(slot)["connected"] is True

        # nothing resumes on its own: no new session, and the motor stays off
        await asyncio.sleep(0.5)
        assert not slot.device.supervisor.running
        assert len(recorder.of("session_started")) == 1
        assert not gun.state.running
        assert device_state(slot)["running"] is False
    finally:
        await daemon.aclose()
    print(f"\nreconnect round trip: {time.monotonic() - started:.2f} s wall")
