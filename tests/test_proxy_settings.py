"""Proxies in the settings: the TOML tables, GUNCTL_PROXIES, flags, and a bad key named."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from gunctl.config import load_settings
from gunctl.errors import ConfigError

KEY = base64.b64encode(os.urandom(32)).decode()


def test_proxies_from_a_file_the_environment_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gunctl.toml"
    config.write_text(
        '[devices]\nble = ["C4:5A:11:20:3B:7E"]\n\n'
        f'[[proxies]]\naddress = "bedroom-proxy.local"\nkey = "{KEY}"\n\n'
        '[[proxies]]\naddress = "hall-proxy.local"\n'
    )
    settings = load_settings(config)
    assert [p.address for p in settings.proxies] == ["bedroom-proxy.local", "hall-proxy.local"]
    assert settings.proxies[0].key is not None
    assert settings.proxies[0].key.get_secret_value() == KEY
    assert KEY not in repr(settings)  # a key is never shown

    monkeypatch.setenv("GUNCTL_PROXIES", json.dumps([f"lounge-proxy.local,{KEY}"]))
    settings = load_settings(config)
    assert [p.address for p in settings.proxies] == ["lounge-proxy.local"]

    settings = load_settings(config, proxies=("attic-proxy.local",))
    assert [(p.address, p.key) for p in settings.proxies] == [("attic-proxy.local", None)]


@pytest.mark.parametrize("key", ["not-base64!", base64.b64encode(b"short").decode()])
def test_a_bad_key_names_the_setting(tmp_path: Path, key: str) -> None:
    config = tmp_path / "gunctl.toml"
    config.write_text(
        f'[devices]\nsim = 1\n\n[[proxies]]\naddress = "hall-proxy.local"\nkey = "{key}"\n'
    )
    with pytest.raises(ConfigError, match=r"proxies\.0\.key: .*32 bytes in base64"):
        load_settings(config)
