"""The diary's scores and each session's telemetry trace, kept in the history file."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from store_events import DEVICE, step

from gunctl.clock import wall_now
from gunctl.control.events import (
    EventBus,
    SafetyStop,
    SafetyWarning,
    SessionAborted,
    SessionCompleted,
    SessionStarted,
)
from gunctl.store import history as history_module
from gunctl.store.history import History, HistoryError, follow
from gunctl.store.trace import CHUNK_SAMPLES, TRACE_HZ, Sample

T = TypeVar("T")


def test_scores_read_back_with_their_session_and_a_skip_is_kept(history: History) -> None:
    before = history.record_score("before", 6, "thigh")  # asked before the session began
    sid = history.begin(device=DEVICE, protocol="glute")
    history.attach_score(before, sid)
    history.record_score("after", session_id=sid)  # the person skipped the question
    record = history.session(sid)
    assert record is not None
    assert [(s.moment, s.pain, s.reach, s.skipped) for s in record.scores] == [
        ("before", 6, "thigh", False),
        ("after", None, None, True),
    ]
    history.record_score("after", 4, session_id=sid)  # answered after all: replaces the skip
    record = history.session(sid)
    assert record is not None
    assert [(s.moment, s.pain, s.skipped) for s in record.scores] == [
        ("before", 6, False),
        ("after", 4, False),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("before", 11), "a whole number from 0 to 10, not 11"),
        (("before", -1), "a whole number from 0 to 10, not -1"),
        (("after", 3, "knee"), "the pain reaches buttock, thigh, below_knee, foot, not 'knee'"),
        (("during", 3), "'before' or 'after' a session, not 'during'"),
    ],
)
def test_a_bad_score_is_refused_with_what_is_allowed(
    history: History, args: tuple, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        history.record_score(*args)
    with pytest.raises(HistoryError, match="there is no session 99"):
        history.record_score("after", 3, session_id=99)
    assert history.diary().scores == []  # nothing half-written


def test_a_simulated_sessions_scores_stay_with_the_simulator(history: History) -> None:
    sid = history.begin(device=DEVICE, protocol="glute", simulated=True)
    history.record_score("before", 9, session_id=sid)
    assert history.diary(simulated=False).scores == []
    assert [s.pain for s in history.diary(simulated=True).scores] == [9]
    assert history.diary_refusal(simulated=False) is None


def test_csv_export_has_the_scores(history: History) -> None:
    sid = history.begin(device=DEVICE, protocol="glute")
    history.record_score("before", 5, "below_knee", session_id=sid)
    history.record_score("after", session_id=sid)
    history.begin(device="other", protocol="glute")  # never asked
    out = io.StringIO()
    history.export_csv(out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    cells = [(r["pain_before"], r["reach_before"], r["pain_after"], r["reach_after"]) for r in rows]
    assert cells == [("5", "below_knee", "skipped", "skipped"), ("", "", "", "")]


def test_an_older_file_gains_the_diary_and_keeps_its_sessions(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:
        old.setattr(history_module, "MIGRATIONS", history_module.MIGRATIONS[:3])
        History(db_path).close()
    with sqlite3.connect(db_path) as third:
        third.execute(
            "INSERT INTO sessions (id, started_at, updated_at, device, protocol, status, source, "
            "pid, host) VALUES (1, ?, ?, 'gun', 'glute', 'completed', 'cli', 1, 'h')",
            (datetime.now(UTC).isoformat(), datetime.now(UTC).isoformat()),
        )
    with History(db_path) as store:
        assert store.schema_version == len(history_module.MIGRATIONS)
        (record,) = store.sessions()
        assert record.scores == []
        assert store.trace(1).samples == []


@pytest.mark.looptime
async def test_follow_keeps_a_trace_with_steps_warnings_and_stops(history: History) -> None:
    """Sampled at TRACE_HZ of session time, written a chunk at a time, drawn with its marks."""
    bus = EventBus()
    sid = history.begin(device=DEVICE, protocol="glute")
    loop = asyncio.get_running_loop()
    began = loop.time()

    def sample() -> Sample:
        at = loop.time() - began
        return Sample(at=at, speed_ppm=1800.0, force_n=10.0 + at, temperature_c=None)

    task = asyncio.create_task(follow(history, bus.subscribe(), sid, sample=sample))
    bus.publish(SessionStarted(at=0.0, device=DEVICE, protocol="glute", steps=1, planned_s=60))
    bus.publish(step(0, "gluteus_maximus", at=0.0))
    seconds = 2 * CHUNK_SAMPLES / TRACE_HZ + 1.0  # two full chunks and part of a third
    await asyncio.sleep(seconds)
    assert len(history.trace(sid).samples) == 2 * CHUNK_SAMPLES  # on disk while running
    bus.publish(
        SafetyWarning(
            at=seconds, device=DEVICE, rule="force", message="ease off", values={"cap_n": 20}
        )
    )
    bus.publish(
        SafetyStop(
            at=seconds, device=DEVICE, rule="force", message="pressing", values={}, step_index=0
        )
    )
    bus.publish(
        SessionAborted(at=seconds, device=DEVICE, reason="force", message="-", worked_s=seconds)
    )
    await asyncio.wait_for(task, 5)
    trace = history.trace(sid)
    assert len(trace.samples) >= 2 * CHUNK_SAMPLES + 3  # the last part chunk written at the end
    assert trace.samples[4].force_n == pytest.approx(
        10.0 + 5 / TRACE_HZ, abs=0.06
    )  # tenths of a newton
    assert trace.samples[0].temperature_c is None  # not reported: not made up
    assert [(m.kind, m.label) for m in trace.marks] == [
        ("step", "gluteus_maximus left"),
        ("warning", "force"),
        ("safety_stop", "force"),
        ("end", "force"),
    ]
    assert trace.marks[0].values["ppm"] == 1800


@pytest.mark.looptime
async def test_a_slow_disk_leaves_no_gap_in_the_trace(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every chunk takes a second to write; sampling goes on meanwhile, on its own grid."""
    bus = EventBus()
    sid = history.begin(device=DEVICE, protocol="glute")
    loop = asyncio.get_running_loop()
    began = loop.time()
    real_to_thread = asyncio.to_thread

    async def slow_disk(func: Callable[..., T], /, *args: object) -> T:
        await asyncio.sleep(1.0)
        return await real_to_thread(func, *args)

    monkeypatch.setattr(asyncio, "to_thread", slow_disk)

    def sample() -> Sample:
        return Sample(at=loop.time() - began, speed_ppm=1800.0, force_n=10.0, temperature_c=None)

    task = asyncio.create_task(follow(history, bus.subscribe(), sid, sample=sample))
    bus.publish(SessionStarted(at=0.0, device=DEVICE, protocol="glute", steps=1, planned_s=60))
    await asyncio.sleep(60.0)
    bus.publish(SessionCompleted(at=60.0, device=DEVICE, worked_s=60.0))
    await task
    at = [s.at for s in history.trace(sid).samples]
    assert len(at) >= 60 * TRACE_HZ - 2  # the first sample a period in, the last before the end
    assert max(b - a for a, b in itertools.pairwise(at)) == pytest.approx(1 / TRACE_HZ, abs=0.01)


def test_the_summary_has_the_latest_answers_this_weeks_massage_and_a_refusal(
    history: History,
) -> None:
    now = wall_now()
    for days, before, after in ((9, 3, 2), (2, 4, None), (1, 8, 3)):
        at = now - timedelta(days=days)
        sid = history.begin(device=DEVICE, protocol="glute", started_at=at)
        history.checkpoint(sid, {("piriformis", "left"): 90.0})
        history.record(SessionCompleted(at=90.0, device=DEVICE, worked_s=90.0), sid)
        history.record_score("before", before, session_id=sid, at=at)
        history.record_score("after", after, session_id=sid, at=at + timedelta(minutes=10))
    summary = history.diary_summary()
    assert summary.last_before is not None
    assert summary.last_after is not None
    assert (summary.last_before.pain, summary.last_after.pain) == (8, 3)
    assert (summary.sessions_this_week, summary.minutes_this_week) == (2, 3.0)
    assert summary.refusal is not None
    assert summary.refusal.rule == "pain_severe"
    history.record_professional()
    assert history.diary_summary().refusal is None
