"""The diary's MQTT commands against careless and hostile traffic, on a real Mosquitto.

A pain score that is a boolean, a string, 7.5, -1 or 11, a reach nobody
knows, a visit with a note that could forge a log line, a payload too large,
a retained command, a thousand of them at once: each is refused with a result
that names the problem, counted by reason and logged, and none of it reaches
the diary. A refusal the diary made stays in force through all of it, and a
stop sent behind a burst of junk still stops the gun.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from mqtthost import MOSQUITTO, Broker, is_event, running, the_gun, watching

from gunctl.config import ServeSettings
from gunctl.store.history import History, HistoryError
from logcapture import warnings_logged

pytestmark = pytest.mark.mqtt

Settings = Callable[..., ServeSettings]
PUBLISH = shutil.which("mosquitto_pub") or str(Path(MOSQUITTO).with_name("mosquitto_pub"))
BROKER_CONFIG = "max_queued_messages 0\n"  # the watcher sees every result of a burst

SCORE = {"action": "score", "moment": "before"}
START = {"action": "start", "protocol": "tiny"}
SEEN = {"action": "professional_seen"}
# (payload, the reason it is refused for, a phrase the error must hold)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({**SCORE, "pain": True}, "invalid", "pain: Input should be a valid integer (got true)"),
    ({**SCORE, "pain": "7"}, "invalid", 'pain: Input should be a valid integer (got "7")'),
    ({**SCORE, "pain": 7.5}, "invalid", "pain: Input should be a valid integer (got 7.5)"),
    ({**SCORE, "pain": 7.0}, "invalid", "pain: Input should be a valid integer (got 7.0)"),
    ({**SCORE, "pain": -1}, "invalid", "pain: Input should be greater than or equal to 0"),
    ({**SCORE, "pain": 11}, "invalid", "pain: Input should be less than or equal to 10"),
    ({**SCORE, "pain": 3, "reach": "ankle"}, "invalid", "reach: Input should be 'buttock'"),
    ({**SCORE, "reach": True}, "invalid", "reach: Input should be 'buttock'"),
    ({"action": "score", "pain": 3}, "invalid", "moment: Field required"),
    ({**SCORE, "moment": "during"}, "invalid", "moment: Input should be 'before' or 'after'"),
    ({**SCORE, "pain": 3, "mood": "ok"}, "invalid", "unknown field 'mood'"),
    ({**SCORE, "pain": [3]}, "invalid", "pain: Input should be a valid integer"),
    ({**START, "pain_before": False}, "invalid", "pain_before: Input should be a valid integer"),
    ({**START, "pain_before": "9"}, "invalid", "pain_before: Input should be a valid integer"),
    ({**START, "pain_before": 7.5}, "invalid", "pain_before: Input should be a valid integer"),
    ({**START, "pain_before": -1}, "invalid", "pain_before: Input should be greater than"),
    ({**START, "pain_before": 11}, "invalid", "pain_before: Input should be less than"),
    ({**START, "reach_before": "knee"}, "invalid", "reach_before: Input should be 'buttock'"),
    ({**SEEN, "note": 42}, "invalid", "note: Input should be a valid string"),
    ({**SEEN, "note": "x" * 201}, "invalid", "note: String should have at most 200 characters"),
    ({**SEEN, "note": "GP\nfake log line"}, "invalid", "note: String should match pattern"),
    ({**SCORE, "pain": 3, "pad": "x" * 5000}, "too_large", "the most accepted is 4096"),
    ({**SEEN, "note": "x" * 5000}, "too_large", "the most accepted is 4096"),
]


def rows(data: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data / "history.sqlite3") as db:
        return db.execute(sql).fetchall()


def nothing_stored(data: Path) -> None:
    assert rows(data, "SELECT COUNT(*) FROM scores") == [(0,)]
    assert rows(data, "SELECT COUNT(*) FROM professional_visits") == [(0,)]
    assert rows(data, "SELECT COUNT(*) FROM sessions") == [(0,)]


async def test_bad_scores_and_visits_are_refused_by_name_counted_logged_and_not_kept(
    broker: Broker, make_settings: Settings, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running(make_settings(), tmp_path) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        before = dict(service.bridge.rejected)
        capfd.readouterr()
        async with watching(broker, topics, topics.result(device_id)) as watcher:
            for payload, reason, says in BAD:
                # a payload refused unread has no id to echo: it is sent without one
                body = json.dumps(payload) if reason == "too_large" else payload
                result = await watcher.command(device_id, body)
                assert (result["ok"], result["reason"]) == (False, reason), payload
                assert says in result["error"], (payload, result["error"])
        expected, counted = {"invalid": 21, "too_large": 2}, {}
        async with asyncio.timeout(10):  # the counts follow the answers within 20 ms
            while counted != expected:
                await asyncio.sleep(0.01)
                rejected = service.bridge.rejected.items()
                counted = {r: n - before[r] for r, n in rejected if n != before[r]}
    # refused in the commands process, which logs to the daemon's stderr (the journal), what
    # it did not log one by one in one line as it ends
    lines = capfd.readouterr().err.splitlines()
    logs = [json.loads(line) for line in lines if line.startswith("{")]
    logged = [e for e in logs if e["event"] in ("command_rejected", "commands_rejected")]
    assert logged, "the refusals were not logged"
    assert (
        sum(
            e["by_reason"].get("invalid", 0) if "by_reason" in e else e["reason"] == "invalid"
            for e in logged
        )
        == counted["invalid"]
    )
    nothing_stored(tmp_path)


async def test_a_refusal_outlasts_junk_visits_and_a_retained_one(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    """Only a well-formed, live professional_seen lifts a refusal, and it says so."""
    settings = make_settings()
    async with running(settings, tmp_path) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with watching(broker, topics, topics.result(device_id)) as watcher:
            severe = await watcher.command(device_id, {**SCORE, "pain": 9})
            assert severe["refusal"]["rule"] == "pain_severe"
            for payload in ({**SEEN, "note": 1}, {**SEEN, "note": "\x1b[2J"}, {**SEEN, "x": 1}):
                assert not (await watcher.command(device_id, payload))["ok"]
            since = len(watcher.seen)
            async with aiomqtt.Client(broker.host, broker.port) as client:
                retained = json.dumps({**SEEN, "id": "kept"})
                await client.publish(topics.set(device_id), retained, qos=1, retain=True)
            result = await watcher.until(lambda m: m.json().get("id") == "kept", since=since)
            assert result.json()["reason"] == "retained"
            refused = await watcher.command(device_id, START)
            assert refused["reason"] == "refused"
            assert refused["error"].startswith("pain_severe: pain 9/10")
            assert rows(tmp_path, "SELECT COUNT(*) FROM professional_visits") == [(0,)]

            with warnings_logged() as logs:
                seen = await watcher.command(device_id, {**SEEN, "note": "GP, no red flags"})
            assert (seen["ok"], seen["lifted"], seen["refusal"]) == (True, "pain_severe", None)
            (lifted,) = [e for e in logs if e["event"] == "diary_refusal_lifted"]
            assert (lifted["device"], lifted["rule"], lifted["note"]) == (
                device_id,
                "pain_severe",
                "GP, no red flags",
            )
            again = await watcher.command(device_id, SEEN)  # nothing left to lift
            assert (again["ok"], again["lifted"]) == (True, None)


async def test_a_burst_of_a_thousand_junk_diary_commands_then_a_stop(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    """Every one answered or shed and counted, nothing kept, and the stop behind them obeyed."""
    async with running(make_settings(time_scale=1.0), tmp_path) as service:
        topics = service.bridge.topics
        device_id, supervisor = the_gun(service)
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            started = await watcher.command(device_id, {"action": "start", "protocol": "long"})
            assert started["ok"], started
            assert supervisor.running
            burst = tmp_path / "burst.txt"
            lines = [{**BAD[n % len(BAD)][0], "id": f"b{n}"} for n in range(1000)]
            burst.write_text("".join(json.dumps(line) + "\n" for line in lines))
            before, since = sum(service.bridge.rejected.values()), len(watcher.seen)
            target = ["-p", str(broker.port), "-q", "1", "-t", topics.set(device_id)]
            with burst.open("rb") as stdin:
                publish = await asyncio.create_subprocess_exec(PUBLISH, *target, "-l", stdin=stdin)
                assert await publish.wait() == 0
            stop = await watcher.command(device_id, {"action": "stop"})
            assert stop["ok"], stop
            await watcher.until(is_event(watcher, device_id, "session_aborted"))
            assert not supervisor.running

            # every refusal read ahead of the stop was counted before the stop was taken
            assert sum(service.bridge.rejected.values()) - before == 1000
            intake = service.bridge.intake

            def answered() -> list[dict[str, Any]]:
                return [
                    m.json()
                    for m in watcher.seen[since:]
                    if m.topic == topics.result(device_id) and m.json().get("id") != stop["id"]
                ]

            def accounted() -> int:
                return len(answered()) + intake.unanswered + intake.rejected["overloaded"]

            # The commands process answers on a connection of its own, so its last
            # answers may come in after the daemon's answer to the stop.
            await watcher.until(lambda _: accounted() >= 1000, since=len(watcher.seen) - 1)
            assert {a["reason"] for a in answered()} == {"invalid", "too_large"}
            # each one answered, or left unanswered in the flood, or shed unread: all counted
            assert accounted() == 1000
    assert rows(tmp_path, "SELECT COUNT(*) FROM scores") == [(0,)]
    assert rows(tmp_path, "SELECT COUNT(*) FROM professional_visits") == [(0,)]
    assert rows(tmp_path, "SELECT end_reason FROM sessions") == [("stopped",)]


def fill(history: History) -> int:
    """Let the history's file grow no more, then score until it is full: SQLite's SQLITE_FULL.

    A full disk without a mount: ``max_page_count`` makes SQLite answer as a
    full disk does. Returns how many scores fitted.
    """
    with history._lock:  # the test's stand-in for a full disk
        (pages,) = history._db.execute("PRAGMA page_count").fetchone()
        history._db.execute(f"PRAGMA max_page_count = {pages}")
    for fitted in itertools.count():
        try:
            history.record_score("before", 2, simulated=True)
        except HistoryError:
            return fitted
    raise AssertionError("unreachable")


async def test_a_full_disk_refuses_a_score_and_a_scored_start_with_the_reason(
    broker: Broker, make_settings: Settings, tmp_path: Path
) -> None:
    async with running(make_settings(), tmp_path) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        fitted = await asyncio.to_thread(fill, service.daemon.history)
        async with watching(broker, topics, topics.result(device_id)) as watcher:
            scored = await watcher.command(device_id, {**SCORE, "pain": 9})
            assert (scored["ok"], scored["reason"]) == (False, "refused")
            assert "is full" in scored["error"]
            assert "internal error" not in scored["error"]
            started = await watcher.command(device_id, {**START, "pain_before": 9})
            assert (started["ok"], started["reason"]) == (False, "refused")
            assert "the score could not be recorded, so no session" in started["error"]
            assert "is full" in started["error"]
    assert rows(tmp_path, "SELECT COUNT(*) FROM scores") == [(fitted,)]  # none half-written
    assert rows(tmp_path, "SELECT COUNT(*) FROM sessions") == [(0,)]
