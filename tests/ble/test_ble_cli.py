"""``gunctl scan``, ``probe`` and ``run --device`` as a person runs them, against the fake BlueZ.

The last test starts the fake as a person would, with ``gunsim bluez``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from blehost import Guns, gunctl, quick_profiles

pytestmark = [pytest.mark.ble, pytest.mark.slow]


async def test_probe_lists_the_gatt_table_and_seeds_a_spec(guns: Guns) -> None:
    peripheral = guns.named["basic-5level"]
    spec = peripheral.spec
    code, out, err = await gunctl("probe", peripheral.address, "--seconds", "0.5", "--json")
    assert code == 0, err
    result = json.loads(out)
    services = {s["uuid"]: s for s in result["services"]}
    chars = {c["uuid"]: c for c in services[spec.gatt.service]["characteristics"]}
    assert chars[spec.gatt.command]["flags"] == ["write-without-response"]
    assert chars[spec.gatt.telemetry]["flags"] == ["notify"]
    assert spec.gatt.battery is not None
    battery = services[spec.gatt.battery.service]["characteristics"][0]
    assert battery["uuid"] == spec.gatt.battery.characteristic
    assert len(battery["value"]) == 2
    # basic-5level streams status frames (0x56 0x81 ...) on its own
    assert any(n["hex"].startswith("56 81") for n in result["notifications"])
    assert result["spec"]["identity"] == {
        "names": [peripheral.name],
        "services": ["fff0"],
        "manufacturer_data": [{"company_id": 0xFFFF, "prefix": "4D47"}],
    }
    assert result["spec"]["gatt"] == {
        "service": "fff0",
        "command": "fff2",
        "telemetry": "fff1",
        "battery": {"service": "180f", "characteristic": "2a19"},
    }

    code, out, err = await gunctl("probe", peripheral.name, "--seconds", "0")
    assert code == 0, err
    assert "fff0" in out
    assert "fff2" in out
    assert "write-without-response" in out


async def test_scan_prints_each_gun_with_its_spec(guns: Guns) -> None:
    code, out, err = await gunctl("scan", "--timeout", "1", "--json")
    assert code == 0, err
    found = {row["address"]: row for row in json.loads(out)}
    for family, peripheral in guns.named.items():
        assert found[peripheral.address]["spec"] == family


async def test_unreachable_and_bad_input_exit_codes(guns: Guns) -> None:
    code, _, err = await gunctl("probe", "AA:BB:CC:DD:EE:FF", "--timeout", "0.5")
    assert code == 4
    assert "no device" in err
    code, _, _ = await gunctl("probe", "gunctl-x", "--seconds", "-1")
    assert code == 2


async def test_run_on_a_ble_gun_completes_and_an_absent_one_is_unreachable(
    guns: Guns, tmp_path: Path
) -> None:
    peripheral = guns.named["gunctl-open"]
    gun = peripheral.device
    env = {"GUNCTL_PROFILES": str(quick_profiles(tmp_path)), "GUNCTL_DATA_DIR": str(tmp_path)}
    # Both at once: the absent gun costs the full scan timeout (10 s) whatever else runs.
    (code, out, err), (absent, _, absent_err) = await asyncio.gather(
        gunctl("run", "quick", "--device", peripheral.name, "--yes", "--json", **env),
        gunctl("run", "quick", "--device", "AA:BB:CC:DD:EE:FF", "--yes", "--json", **env),
    )
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    types = [e["type"] for e in events]
    assert types[0] == "session_started"
    assert types[-1] == "session_completed"
    assert "safety_stop" not in types
    assert {e["device"] for e in events} == {peripheral.address}
    assert any(r.command.kind == "set_speed" for r in gun.commands)
    assert not gun.state.running
    assert not gun.connected  # the run let go of the link when it ended

    assert absent == 4, absent_err
    assert "cannot reach AA:BB:CC:DD:EE:FF" in absent_err


async def test_gunsim_bluez_serves_guns_that_gunctl_finds() -> None:
    fake = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from gunsim.cli import main; main()",
        "bluez",
        "--family",
        "basic-5level",
        "--count",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert fake.stdout is not None
    try:
        line = (await asyncio.wait_for(fake.stdout.readline(), 10)).decode()
        assert line.startswith("export DBUS_SYSTEM_BUS_ADDRESS=unix:")
        bus = line.strip().split("=", 1)[1]
        code, out, err = await gunctl(
            "scan", "--timeout", "1", "--json", DBUS_SYSTEM_BUS_ADDRESS=bus
        )
        assert code == 0, err
        assert [row["spec"] for row in json.loads(out)] == ["basic-5level", "basic-5level"]
    finally:
        fake.send_signal(signal.SIGINT)
        await asyncio.wait_for(fake.wait(), 10)
    assert fake.returncode == 0
