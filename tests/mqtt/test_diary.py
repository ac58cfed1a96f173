"""The symptom diary over MQTT: scores as command fields, a refusal, a visit, the document.

What Home Assistant's diary entities send (a score, a visit) is a device
command like any other; the diary's document is retained on
``<base>/bridge/<node>/diary``, the real and the simulated diary apart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mqtthost import Broker, Watcher, running, watching

from gunctl.config import ServeSettings
from gunctl.store.history import History

pytestmark = pytest.mark.mqtt


async def diary(watcher: Watcher, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The simulated part of the newest diary document that passes ``check``."""
    topic = watcher.topics.bridge_diary
    found = await watcher.until(lambda m: m.topic == topic and check(m.json()["simulated"]))
    return dict(found.json()["simulated"])


async def test_scores_a_refusal_and_a_visit_over_mqtt(
    broker: Broker, make_settings: Callable[..., ServeSettings], tmp_path: Path
) -> None:
    async with running(make_settings(), tmp_path) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            await diary(watcher, lambda d: d["refusal"] is None)

            scored = await watcher.command(
                device_id, {"action": "score", "moment": "before", "pain": 9, "reach": "foot"}
            )
            assert scored["ok"], scored
            assert scored["refusal"]["rule"] == "pain_severe"
            document = await diary(watcher, lambda d: d["refusal"] is not None)
            assert document["last_before"]["pain"] == 9
            assert "seek medical attention" in document["refusal"]["advice"]

            refused = await watcher.command(device_id, {"action": "start", "protocol": "tiny"})
            assert not refused["ok"]
            assert refused["reason"] == "refused"
            assert refused["error"].startswith("pain_severe: pain 9/10 before")

            seen = await watcher.command(device_id, {"action": "professional_seen", "note": "GP"})
            assert seen["ok"], seen
            assert seen["refusal"] is None
            visit = service.daemon.history.last_professional(simulated=True)
            assert visit is not None
            assert (visit.source, visit.note) == ("mqtt", "GP")
            await diary(watcher, lambda d: d["refusal"] is None)

            started = await watcher.command(
                device_id,
                {"action": "start", "protocol": "tiny", "pain_before": 4, "reach_before": "thigh"},
            )
            assert started["ok"], started
            assert await watcher.confirm_heads(device_id) == "session_completed"
            after = await watcher.command(device_id, {"action": "score", "moment": "after"})
            assert after["ok"], after
            assert (after["session"], after["skipped"]) == (started["session"], True)
            document = await diary(watcher, lambda d: d["minutes_this_week"] > 0)
            assert document["last_before"]["pain"] == 4
            assert document["sessions_this_week"] == 1

            bad = await watcher.command(
                device_id, {"action": "score", "moment": "after", "pain": 11}
            )
            assert (bad["ok"], bad["reason"]) == (False, "invalid")
            assert "pain" in bad["error"]
    with History(tmp_path / "history.sqlite3") as history:
        (record,) = history.sessions()
        assert history.diary(simulated=False).scores == []  # a simulated gun's diary, apart
        trace = history.trace(record.id)
    # the session's telemetry trace, sampled in session time however fast the simulator runs
    assert len(trace.samples) >= 4 * record.worked_s * 0.8
    assert [m.kind for m in trace.marks].count("step") == 2
    assert [(s.moment, s.pain, s.reach, s.skipped) for s in record.scores] == [
        ("before", 4, "thigh", False),
        ("after", None, None, True),
    ]


async def test_an_after_score_needs_a_session(
    broker: Broker, make_settings: Callable[..., ServeSettings], tmp_path: Path
) -> None:
    async with running(make_settings(), tmp_path) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            result = await watcher.command(
                device_id, {"action": "score", "moment": "after", "pain": 3}
            )
    assert (result["ok"], result["reason"]) == (False, "invalid")
    assert 'use "moment": "before" for the next one' in result["error"]
