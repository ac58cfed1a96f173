"""Fixtures for the MQTT tests: a private Mosquitto per module, profiles and settings."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mqtthost import LONG, MOSQUITTO, PIRI, SIM_SPEC, TIME_SCALE, TINY, Broker, free_port

from gunctl.config import ServeSettings, load_settings

_NODES = itertools.count(1)  # node ids never repeat on one broker, so retained state cannot mix


@pytest.fixture(scope="module")
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    """The module's Mosquitto, with the module's ``BROKER_CONFIG`` lines if it has any."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (scripts/bootstrap installs it)")
    extra = getattr(request.module, "BROKER_CONFIG", "")
    server = Broker(tmp_path_factory.mktemp("mosquitto"), free_port(), extra=extra)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "profiles"
    (folder / "protocols").mkdir(parents=True)
    (folder / "protocols" / "tiny.yaml").write_text(TINY)
    (folder / "protocols" / "piri.yaml").write_text(PIRI)
    (folder / "protocols" / "long.yaml").write_text(LONG)
    monkeypatch.setenv("GUNCTL_PROFILES", str(folder))
    monkeypatch.setenv("GUNCTL_DATA_DIR", str(tmp_path / "data"))
    return folder


@pytest.fixture
def make_settings(broker: Broker, profiles: Path) -> Callable[..., ServeSettings]:
    def make(**overrides: Any) -> ServeSettings:
        values: dict[str, Any] = {
            "node_id": f"n{next(_NODES)}",
            "mqtt": {"host": broker.host, "port": broker.port},
            "devices": {"sim": 1, "sim_spec": SIM_SPEC},
            "red_flags_acknowledged": True,
            "time_scale": TIME_SCALE,
            "telemetry_hz": 5.0,
            "state_interval_s": 0.5,
        }
        for key, value in overrides.items():
            if isinstance(value, dict):
                values[key] = {**values.get(key, {}), **value}
            else:
                values[key] = value
        return load_settings(None, **values)

    return make
