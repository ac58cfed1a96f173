"""``gunctl scan`` and ``gunctl probe`` as a person runs them, against the fake BlueZ."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from blehost import Guns

pytestmark = [pytest.mark.ble, pytest.mark.slow]


async def gunctl(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from gunctl.cli.app import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),  # carries DBUS_SYSTEM_BUS_ADDRESS to the fake's bus
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


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
