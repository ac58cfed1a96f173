"""Sessions started, followed and completed over MQTT, on two simulated guns at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from mqtthost import Broker, running, watching

from gunctl.config import ServeSettings
from gunctl.store.history import History

pytestmark = pytest.mark.mqtt


async def test_two_guns_complete_a_session_each(
    broker: Broker, make_settings: Callable[..., ServeSettings], tmp_path: Path
) -> None:
    settings = make_settings(devices={"sim": 2})
    async with running(settings, tmp_path) as service:
        topics = service.bridge.topics
        ids = sorted(service.daemon.slots)
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            results = await asyncio.gather(
                *(
                    watcher.command(d, {"action": "start", "protocol": "tiny", "side": "left"})
                    for d in ids
                )
            )
            assert all(r["ok"] for r in results), results
            assert {r["protocol"] for r in results} == {"tiny"}

            endings = await asyncio.gather(*(watcher.confirm_heads(d) for d in ids))
            assert endings == ["session_completed"] * 2
            for device_id in ids:
                kinds = watcher.events(device_id)
                assert kinds[0] == "session_started"
                assert kinds[-1] == "session_completed", kinds
                assert kinds.count("step_completed") == 2
                await watcher.state(device_id, lambda s: s["connected"] and not s["running"])
                assert watcher.on(topics.telemetry(device_id)), "no telemetry"
        assert service.bridge.connections == 1  # connected once, never dropped
    with History(tmp_path / "history.sqlite3") as history:
        sessions = history.sessions()
    assert len(sessions) == 2
    assert {s.source for s in sessions} == {"mqtt"}
    assert {s.simulated for s in sessions} == {True}  # kept apart from a person's sessions
    assert {s.status for s in sessions} == {"completed"}


def _pain_today(data_dir: Path, muscle: str) -> None:
    """A simulated session earlier today that ended on a pain stop on ``muscle`` (left)."""
    from gunctl.control.events import PainReported

    with History(data_dir / "history.sqlite3") as history:
        sid = history.begin(device=f"earlier-{muscle}", protocol="tiny", simulated=True)
        history.record(
            PainReported(
                at=1.0, device=f"earlier-{muscle}", step_index=0, muscle=muscle, side="left"
            ),
            sid,
        )


async def test_a_start_skips_a_side_blocked_by_pain_today_and_refuses_when_none_is_left(
    broker: Broker, make_settings: Callable[..., ServeSettings], tmp_path: Path
) -> None:
    _pain_today(tmp_path, "piriformis")
    settings = make_settings(devices={"sim": 1})
    async with running(settings, tmp_path) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            started = await watcher.command(device_id, {"action": "start", "protocol": "tiny"})
            assert started["ok"], started
            assert started["steps"] == 1
            [skipped] = started["skipped"]
            assert skipped.startswith("piriformis left, sharp pain at ")
            await watcher.command(device_id, {"action": "stop"})
            await watcher.state(device_id, lambda s: not s["running"])

            _pain_today(tmp_path, "gluteus-maximus")
            refused = await watcher.command(device_id, {"action": "start", "protocol": "tiny"})
            assert not refused["ok"]
            assert "nothing of tiny is left to run today" in refused["error"], refused
