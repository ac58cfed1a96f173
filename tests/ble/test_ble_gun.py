"""``gunctl.connect`` through the real bleak stack and a fake BlueZ: the Python API on a gun."""

from __future__ import annotations

from pathlib import Path

import pytest

import gunctl
from gunctl.heads import Head
from gunctl.store.history import History

from blehost import SHORT, Guns, eventually

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
