"""``gunctl probe --record`` against the fake BlueZ: the fixture it saves replays."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gunctl.capture.fixture import read_fixture
from gunctl.capture.replay import replay
from gunctl.cli.app import cli

from blehost import Guns

pytestmark = [pytest.mark.ble]


async def test_probe_record_saves_a_fixture_its_spec_replays(guns: Guns, tmp_path: Path) -> None:
    peripheral = guns.named["gunctl-open"]
    args = ["probe", peripheral.name, "--record", "--seconds", "1", "--fixtures", str(tmp_path)]
    # probe runs its own event loop, so it runs in a thread beside the fake's
    result = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    saved = Path(json.loads(result.output)["fixture"])
    assert saved == tmp_path / "gunctl-open" / f"{peripheral.name}_unknown.json"
    fixture = read_fixture(saved)
    assert fixture.family == "gunctl-open"
    assert fixture.model == peripheral.name
    # shared in pull requests: no address
    assert peripheral.address not in fixture.model_dump_json()
    assert len(fixture.notifications) >= 10  # 25 Hz for a second
    coverage = replay(peripheral.spec, fixture.records())
    assert coverage.ok
    assert dict(coverage.kinds) == {("device", "status"): len(fixture.notifications)}
