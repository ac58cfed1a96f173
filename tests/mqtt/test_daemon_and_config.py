"""The daemon without a broker (reconnecting with back-off), and the settings and their errors."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gunctl.clock import Clock
from gunctl.config import load_settings
from gunctl.control.events import Event
from gunctl.daemon import Backoff, Daemon, DeviceSlot
from gunctl.devices import Device, connect_sim
from gunctl.errors import ConfigError
from gunctl.links.base import ConnectError
from gunctl.profiles.loader import load_catalogue
from gunctl.store.history import History

pytestmark = pytest.mark.mqtt

GUNCTL = Path(sys.executable).with_name("gunctl")


def test_backoff_doubles_to_a_cap_with_jitter() -> None:
    backoff = Backoff(first_s=1.0, cap_s=60.0)
    rng = random.Random(1)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert min(delays) >= base / 2
        assert max(delays) <= base
        assert max(delays) - min(delays) > base / 4  # jittered, not one fixed value


class Recorder:
    def __init__(self) -> None:
        self.links: list[tuple[str, bool]] = []
        self.events: list[Event] = []

    def on_event(self, slot: DeviceSlot, event: Event) -> None:
        self.events.append(event)

    def on_link(self, slot: DeviceSlot, online: bool) -> None:
        self.links.append((slot.device_id, online))


async def test_a_lost_ble_gun_is_reconnected_after_a_back_off(tmp_path: Path) -> None:
    settings = load_settings(None, node_id="solo", devices={"ble": ["C4:5A:11:20:3B:7E"]})
    clock = Clock()
    attempts: list[float] = []
    devices: list[Device] = []

    async def flaky(slot: DeviceSlot) -> Device:
        """Stands in for connect_ble: refuses twice, then connects a simulated gun."""
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) in (1, 2, 4):
            raise ConnectError("le-connection-abort-by-local")
        device = await connect_sim("basic-5level", clock=clock, device_id=slot.target)
        devices.append(device)
        return device

    daemon = Daemon(
        settings,
        clock=clock,
        history=History(tmp_path / "history.sqlite3"),
        catalogue=load_catalogue(),
        connector=flaky,
        backoff=Backoff(first_s=0.05, cap_s=0.2),
    )
    recorder = Recorder()
    daemon.subscribe(recorder)
    (slot,) = daemon.slots.values()
    assert slot.device_id == "ble-c45a11203b7e"
    daemon.start()
    try:
        await daemon.wait_connected(5)
        assert len(attempts) == 3
        assert attempts[2] - attempts[1] >= 0.05  # the second retry waited longer than the first
        assert devices[0].sim is not None
        devices[0].sim.drop_link()  # the gun goes out of range
        await asyncio.sleep(0.1)
        await daemon.wait_connected(5)
        assert recorder.links == [
            (slot.device_id, True),
            (slot.device_id, False),
            (slot.device_id, True),
        ]
        assert any(e.type == "safety_stop" and e.rule == "link_lost" for e in recorder.events)
        assert slot.device is devices[1]
        assert not slot.device.supervisor.running  # nothing resumes on its own
    finally:
        await daemon.aclose()


def test_settings_from_file_variables_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret-words\n")
    config = tmp_path / "gunctl.toml"
    config.write_text(
        'node_id = "from-file"\nintensity_cap = 0.6\nheads = ["ball", "bullet"]\n'
        f'[mqtt]\nhost = "broker.lan"\nport = 1884\nuser = "gun"\npassword_file = "{password}"\n'
        "[devices]\nsim = 2\n"
    )
    monkeypatch.setenv("GUNCTL_MQTT_PORT", "1885")  # a variable beats the file
    monkeypatch.setenv("GUNCTL_DEVICES_SIM_SPEC", "theragun-gen4")
    settings = load_settings(config, mqtt={"host": "flag-host", "port": None}, node_id=None)
    assert settings.node_id == "from-file"
    assert settings.mqtt.host == "flag-host"  # a flag beats both
    assert settings.mqtt.port == 1885
    assert settings.devices.sim_spec == "theragun-gen4"
    assert settings.device_ids() == ["sim-from-file-1", "sim-from-file-2"]
    assert settings.intensity_cap == 0.6
    assert settings.red_flags_acknowledged is False  # the default refuses every start
    assert settings.mqtt.base_topic == "gunctl"
    assert settings.mqtt.discovery_prefix == "homeassistant"
    assert settings.telemetry_hz == 5.0
    secret = settings.mqtt.password()
    assert secret is not None
    assert secret.get_secret_value() == "s3cret-words"
    assert "s3cret" not in repr(settings) + str(secret) + repr(secret)


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("[mqtt]\nport = 70000\n[devices]\nsim = 1\n", "mqtt.port"),
        ("[mqtt]\nhots = 'x'\n[devices]\nsim = 1\n", "mqtt.hots: unknown setting"),
        ("[devices]\nsim = 1\nsim_spec = 'nope'\n", "devices.sim_spec: unknown firmware spec"),
        ("node_id = 'a/b'\n[devices]\nsim = 1\n", "node_id"),
        (f"node_id = '{'n' * 129}'\n[devices]\nsim = 1\n", "node_id: 'nnn"),
        (f"node_id = '{'n' * 129}'\n[devices]\nsim = 1\n", "at most 128 letters"),
        (f"[devices]\nble = ['{'a' * 126}']\n", "devices: id 'ble-aaa"),
        ("intensity_cap = 1.5\n[devices]\nsim = 1\n", "intensity_cap"),
        ("[devices]\nble = ['AA:BB:CC:DD:EE:FF']\n", None),
        (
            "time_scale = 10\n[devices]\nble = ['AA:BB:CC:DD:EE:FF']\n",
            "time_scale: only for simulated",
        ),
        ("[devices]\nsim = 0\n", "devices: none configured"),
        ("[mqtt]\npassword_file = '/nonexistent'\n[devices]\nsim = 1\n", "mqtt.password_file"),
        ("this is = not toml [", "config file"),
        (
            "node_id = 'desk'\n[devices]\nsim = 1\n[names]\nsim-desk-2 = 'Sofa gun'\n",
            "names: 'sim-desk-2' is not a gun served here (the ids are: sim-desk-1)",
        ),
        ("node_id = 'desk'\n[devices]\nsim = 1\n[names]\nsim-desk-1 = ''\n", "names"),
        ("node_id = 'desk'\n[devices]\nsim = 1\n[names]\nsim-desk-1 = 'Sofa gun'\n", None),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, toml: str, words: str | None) -> None:
    config = tmp_path / "gunctl.toml"
    config.write_text(toml)
    if words is None:
        load_settings(config)
        return
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_settings(config)


@pytest.mark.slow
def test_serve_exits_2_on_bad_settings_without_showing_the_password(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("hunter2-secret\n")
    result = subprocess.run(
        [str(GUNCTL), "serve", "--sim", "1", "--mqtt-port", "0", "--mqtt-user", "u",
         "--mqtt-password-file", str(password)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "mqtt.port" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
