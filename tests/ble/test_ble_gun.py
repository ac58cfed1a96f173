"""``gunctl.connect`` through the real bleak stack and a fake BlueZ: the Python API on a gun."""

from __future__ import annotations

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
