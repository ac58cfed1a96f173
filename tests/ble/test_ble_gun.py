"""``gunctl.connect`` through the real bleak stack and a fake BlueZ: the Python API on a gun."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest

import gunctl
from gunctl.heads import Head
from gunctl.specs.loader import load_specs
from gunctl.store.history import History

from blehost import SHORT, Guns, eventually
from proxyhost import House

pytestmark = pytest.mark.ble


async def test_connect_drives_a_gun_and_records_its_session(guns: Guns, tmp_path: Path) -> None:
    peripheral = guns.named["basic-5level"]
    history = History(tmp_path / "history.sqlite3")
    async with await gunctl.connect(peripheral.address, history=history, timeout=SHORT) as gun:
        state = gun.state()
        assert (state.connected, state.spec, state.phase) == (True, "basic-5level", "idle")
        await gun.start("glute", side="left")
        await eventually(lambda: gun.state().waiting_for_head)
        step = gun.state().step
        assert step is not None
        peripheral.device.fit_head(Head(step.head))  # the person's hands
        await gun.confirm_head()
        await eventually(lambda: gun.state().motor_running)
        await gun.stop()
        assert gun.state().setpoint_ppm == 0
        await eventually(lambda: not peripheral.device.state.running)
    (record,) = History(tmp_path / "history.sqlite3").sessions()
    assert (record.protocol, record.status, record.simulated) == ("glute", "aborted", False)


async def test_a_gun_nobody_advertises_is_not_found(guns: Guns, tmp_path: Path) -> None:
    with pytest.raises(gunctl.DeviceNotFoundError) as caught:
        await gunctl.connect("No Such Gun", timeout=0.5, history=History(tmp_path / "h.sqlite3"))
    assert caught.value.reason == "device_not_found"


@pytest.mark.parametrize(
    ("family", "device_notices_after", "firmware_stop"),
    [
        # the gun never notices the link went: its keepalive watchdog stops the motor (0.6 s)
        pytest.param("gunctl-open", None, "watchdog", id="gunctl-open-watchdog"),
        # no watchdog: the motor stops when the gun notices, at its supervision timeout
        pytest.param("theragun-gen4", 0.5, "link_lost", id="theragun-gen4-no-watchdog"),
    ],
)
async def test_a_lost_link_ends_run_with_link_lost_and_the_gun_stays_gone(
    guns: Guns,
    tmp_path: Path,
    family: str,
    device_notices_after: float | None,
    firmware_stop: str,
) -> None:
    peripheral = guns.named[family]
    device = peripheral.device
    history = History(tmp_path / "history.sqlite3")
    async with await gunctl.connect(peripheral.address, history=history, timeout=SHORT) as gun:

        async def fit_heads() -> None:  # the person, following the events as docs/python.md says
            async for event in gun.events():
                if isinstance(event, gunctl.HeadChangeRequired):
                    device.fit_head(Head(event.step.head))
                    await gun.confirm_head()

        person = asyncio.create_task(fit_heads())
        run = asyncio.create_task(gun.run("glute", side="left"))
        await eventually(lambda: device.state.running and gun.state().motor_running)
        connects = peripheral.faults.connect_calls
        peripheral.drop(device_notices_after=device_notices_after)

        with pytest.raises(gunctl.LinkLostError) as lost:
            await asyncio.wait_for(run, SHORT)
        assert lost.value.reason == "link_lost"
        assert "does not reconnect" in lost.value.advice
        await asyncio.wait_for(person, SHORT)  # events() ended with the link
        state = gun.state()
        assert (state.connected, state.running, state.phase) == (False, False, "safety_stop")
        assert state.last_safety_stop is not None
        assert state.last_safety_stop.rule == "link_lost"

        # nothing from the host reaches the gun now: it stops its motor by itself
        await eventually(lambda: not device.state.running)
        assert [e.kind for e in device.events][-1] == firmware_stop
        for request in (gun.start("glute", side="left"), gun.stop()):
            with pytest.raises(gunctl.LinkLostError, match="no longer connected"):
                await request
        assert peripheral.faults.connect_calls == connects  # never tried to reconnect
    (record,) = History(tmp_path / "history.sqlite3").sessions()
    assert (record.status, record.end_reason, record.source) == ("aborted", "link_lost", "python")


@pytest.mark.proxy
async def test_connect_reaches_a_gun_through_an_esphome_proxy(house: House, tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    proxy = await house.proxy("hall", psk=key)
    device = await house.gun(load_specs()["basic-5level"])
    heard = proxy.add(device, rssi=-60)
    history = History(tmp_path / "history.sqlite3")
    async with await gunctl.connect(
        heard.address, proxy=f"{proxy.address},{key}", history=history, timeout=SHORT
    ) as gun:
        assert (gun.state().connected, gun.state().spec) == (True, "basic-5level")
        assert proxy.free == proxy.slots - 1  # the proxy holds the connection
        with pytest.raises(gunctl.ProxyError, match="already open") as second:
            await gunctl.connect(heard.address, proxy=proxy.address, history=history)
        assert second.value.reason == "proxy_unusable"
        await gun.start("glute", side="left")
        await eventually(lambda: gun.state().waiting_for_head)
        step = gun.state().step
        assert step is not None
        device.fit_head(Head(step.head))
        await gun.confirm_head()
        await eventually(lambda: gun.state().motor_running)
        await gun.stop()
        await eventually(lambda: not device.state.running)
    await eventually(lambda: proxy.free == proxy.slots)  # closing let go of the slot
    (record,) = History(tmp_path / "history.sqlite3").sessions()
    assert (record.source, record.status, record.device) == ("python", "aborted", heard.address)


async def test_a_bad_proxy_is_refused_before_anything_connects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = History(tmp_path / "history.sqlite3")
    with pytest.raises(
        gunctl.ConfigError, match=r"^proxy: 0\.key: must be the proxy.s API encryption"
    ):
        await gunctl.connect("Pro", proxy="hall.local,not-a-key", history=history)
    monkeypatch.setenv("GUNCTL_PROXIES", "hall.local")  # not a JSON list
    with pytest.raises(gunctl.ConfigError, match=r"^GUNCTL_PROXIES: ") as caught:
        await gunctl.connect("Pro", history=history)
    assert caught.value.reason == "invalid_configuration"
    assert "HOST,KEY" in caught.value.advice
