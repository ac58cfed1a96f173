"""``gunctl scan``, ``probe`` and ``run`` with ``--proxy``, as a person runs them, against fake
ESPHome proxies started by the test."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from gunctl.specs.loader import load_specs

from blehost import eventually, gunctl, quick_profiles, start_gunctl
from proxyhost import House

pytestmark = [pytest.mark.ble, pytest.mark.proxy, pytest.mark.slow]

SPECS = load_specs()


async def test_scan_merges_two_proxies_and_lists_their_free_slots(house: House) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    hall = await house.proxy("hall", slots=3)
    bedroom = await house.proxy("bedroom", slots=4, psk=key)
    gun = await house.gun(SPECS["basic-5level"])
    heard = hall.add(gun, rssi=-82)
    bedroom.add(gun, address=heard.address, rssi=-51)
    code, out, err = await gunctl(
        "scan",
        "--timeout",
        "1",
        "--json",
        GUNCTL_PROXIES=json.dumps([hall.address, f"{bedroom.address},{key}"]),
    )
    assert code == 0, err
    result = json.loads(out)
    proxies = {p["address"]: p for p in result["proxies"]}
    assert (proxies[hall.address]["slots"], proxies[hall.address]["free"]) == (3, 3)
    assert (proxies[bedroom.address]["slots"], proxies[bedroom.address]["free"]) == (4, 4)
    [row] = [r for r in result["devices"] if r["address"] == heard.address]
    assert row["spec"] == "basic-5level"
    assert [s["source"].split(" ")[0] for s in row["sources"]] == ["bedroom", "hall"]
    assert row["rssi"] == row["sources"][0]["rssi"]

    code, out, err = await gunctl("scan", "--timeout", "1", "--proxy", hall.address)
    assert code == 0, err
    assert "hall" in out
    assert "basic-5level" in out


async def test_probe_through_a_proxy(house: House) -> None:
    proxy = await house.proxy("hall")
    heard = proxy.add(await house.gun(SPECS["gunctl-open"]))
    code, out, err = await gunctl(
        "probe", heard.address, "--seconds", "0.5", "--json", "--proxy", proxy.address
    )
    assert code == 0, err
    result = json.loads(out)
    spec = SPECS["gunctl-open"]
    assert spec.gatt.service in {s["uuid"] for s in result["services"]}
    assert result["device"]["name"] == heard.name


async def test_a_bad_proxy_setting_is_invalid_input() -> None:
    code, _, err = await gunctl("scan", "--proxy", "hall.local,not-a-key")
    assert code == 2
    assert "encryption key" in err
    code, _, err = await gunctl("scan", GUNCTL_PROXIES="hall.local")
    assert code == 2
    assert "GUNCTL_PROXIES" in err


async def test_run_through_a_proxy_that_reboots_mid_hold_exits_4_with_the_motor_stopped(
    house: House, tmp_path: Path
) -> None:
    proxy = await house.proxy("hall")
    gun = await house.gun(SPECS["gunctl-open"])
    heard = proxy.add(gun)
    env = {"GUNCTL_PROFILES": str(quick_profiles(tmp_path)), "GUNCTL_DATA_DIR": str(tmp_path)}
    process = await start_gunctl(
        *("run", "quick", "--device", heard.address, "--proxy", proxy.address, "--yes", "--json"),
        **env,
    )
    try:
        await eventually(lambda: gun.state.running and gun.state.speed_ppm > 1000, 20.0)
        proxy.reboot(down_s=0.5)
        out, err = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 4, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    stops = [e for e in events if e["type"] == "safety_stop"]
    assert stops[0]["rule"] == "link_lost"
    assert events[-1]["type"] == "session_aborted"
    await eventually(lambda: not gun.state.running)


async def test_run_with_every_slot_taken_names_the_proxy(house: House, tmp_path: Path) -> None:
    proxy = await house.proxy("hall", slots=3)
    proxy.occupy(3)  # Home Assistant holds every slot with other devices
    heard = proxy.add(await house.gun(SPECS["gunctl-open"]))
    env = {"GUNCTL_PROFILES": str(quick_profiles(tmp_path)), "GUNCTL_DATA_DIR": str(tmp_path)}
    code, _, err = await gunctl(
        "run",
        "quick",
        "--device",
        heard.address,
        "--proxy",
        proxy.address,
        "--yes",
        "--json",
        **env,
    )
    assert code == 4, err
    assert "hall" in err
    assert "no free slot" in err


async def test_gunsim_proxy_serves_guns_that_gunctl_finds() -> None:
    fake = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from gunsim.cli import main; main()",
        *("proxy", "--family", "theragun-gen4", "--count", "2", "--encrypt"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert fake.stdout is not None
    try:
        given = (await asyncio.wait_for(fake.stdout.readline(), 10)).decode().strip()
        assert "," in given  # HOST,KEY
        code, out, err = await gunctl("scan", "--timeout", "1", "--json", "--proxy", given)
        assert code == 0, err
        devices = json.loads(out)["devices"]
        assert [row["spec"] for row in devices] == ["theragun-gen4", "theragun-gen4"]
    finally:
        fake.send_signal(signal.SIGINT)
        await asyncio.wait_for(fake.wait(), 10)
    assert fake.returncode == 0
