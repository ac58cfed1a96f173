"""The history store: sessions read back as they were run, and 48-hour exposure."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from store_events import DEVICE, step

from gunctl.control.events import (
    Cue,
    Event,
    HeadChangeRequired,
    PainReported,
    Paused,
    Resumed,
    SafetyStop,
    SafetyWarning,
    SessionAborted,
    SessionCompleted,
    SessionStarted,
    StepCompleted,
)
from gunctl.store import history as history_module
from gunctl.store.history import CSV_COLUMNS, History, HistoryError, default_path


def times(store: History, session_id: int) -> dict[tuple[str, str], float]:
    record = store.session(session_id)
    assert record is not None
    return {(m.muscle, m.side): m.worked_s for m in record.muscles}


def completed(at: float, index: int, muscle: str, worked: float, **kw: object) -> StepCompleted:
    return StepCompleted(
        at=at,
        device=DEVICE,
        step_index=index,
        muscle=muscle,
        side=str(kw.get("side", "left")),
        worked_s=worked,
        skipped=bool(kw.get("skipped", False)),
    )


def test_a_completed_session_reads_back_with_time_per_muscle(history: History) -> None:
    sid = history.begin(
        device=DEVICE, protocol="glute", spec="theragun-g4", side="left", intensity_cap=0.6
    )
    events: list[Event] = [
        SessionStarted(at=0.0, device=DEVICE, protocol="glute", steps=3, planned_s=200.0),
        HeadChangeRequired(
            at=0.0, device=DEVICE, step=step(0, "gluteus_maximus").step, previous_head=None
        ),
        step(0, "gluteus_maximus", at=4.0),
        Cue(at=40.0, device=DEVICE, message="move a little", step_index=0),
        completed(75.0, 0, "gluteus_maximus", 62.5),
        step(1, "gluteus_medius", at=75.0),
        Paused(at=80.0, device=DEVICE, reason="requested"),
        Resumed(at=120.0, device=DEVICE),
        completed(150.0, 1, "gluteus_medius", 30.0),
        step(2, "gluteus_maximus", at=150.0),
        completed(170.0, 2, "gluteus_maximus", 15.0),
        SessionCompleted(at=170.0, device=DEVICE, worked_s=107.5),
    ]
    for event in events:
        history.record(event)

    [record] = history.sessions()
    assert record.id == sid
    assert record.status == "completed"
    assert record.end_reason is None
    assert record.protocol == "glute"
    assert record.spec == "theragun-g4"
    assert record.side == "left"
    assert record.intensity_cap == 0.6
    assert record.planned_s == 200.0
    assert record.source == "cli"
    assert record.worked_s == pytest.approx(107.5)
    assert record.ended_at is not None
    assert record.ended_at >= record.started_at
    assert record.started_at.tzinfo is not None
    assert times(history, sid) == {
        ("gluteus_maximus", "left"): pytest.approx(77.5),
        ("gluteus_medius", "left"): pytest.approx(30.0),
    }


def test_an_aborted_session_keeps_its_stop_and_the_unfinished_step(history: History) -> None:
    sid = history.begin(device=DEVICE, protocol="piriformis", source="mqtt")
    history.record(
        SessionStarted(at=0, device=DEVICE, protocol="piriformis", steps=2, planned_s=90)
    )
    history.record(step(0, "piriformis", "right", at=1.0))
    history.record(completed(40.0, 0, "piriformis", 35.0, side="right"))
    history.record(step(1, "piriformis", "left", at=40.0))
    history.record(
        SafetyWarning(at=50.0, device=DEVICE, rule="temperature", message="warm", values={"c": 55})
    )
    values = {"force_n": 61.2, "cap_n": 45.0}
    history.record(
        SafetyStop(
            at=52.0, device=DEVICE, rule="force", message="too hard", values=values, step_index=1
        )
    )
    history.record(
        SessionAborted(at=52.0, device=DEVICE, reason="force", message="too hard", worked_s=46.5)
    )

    record = history.session(sid)
    assert record is not None
    assert record.status == "aborted"
    assert (record.end_reason, record.end_message) == ("force", "too hard")
    assert record.source == "mqtt"
    assert record.worked_s == pytest.approx(46.5)
    # The unfinished step gets exactly the motor time the session's total leaves for it.
    assert times(history, sid) == {
        ("piriformis", "right"): pytest.approx(35.0),
        ("piriformis", "left"): pytest.approx(11.5),
    }
    [stop] = record.safety_stops
    assert (stop.at, stop.rule, stop.message, stop.values, stop.step_index) == (
        52.0,
        "force",
        "too hard",
        values,
        1,
    )


def test_pain_is_recorded_and_paused_time_is_not_counted(history: History) -> None:
    sid = history.begin(device=DEVICE, protocol="glute")
    history.record(step(0, "piriformis", at=0.0))
    history.record(
        PainReported(at=10.0, device=DEVICE, step_index=0, muscle="piriformis", side="left")
    )
    history.record(Paused(at=10.0, device=DEVICE, reason="pain"))
    history.record(completed(10.0, 0, "piriformis", 9.0, skipped=True))
    history.record(step(1, "gluteus_medius", at=10.0))  # entered while still paused
    history.record(Cue(at=100.0, device=DEVICE, message="-", step_index=1))
    assert times(history, sid)[("gluteus_medius", "left")] == 0.0
    history.record(Resumed(at=100.0, device=DEVICE))
    history.record(Cue(at=120.0, device=DEVICE, message="-", step_index=1))
    assert times(history, sid)[("gluteus_medius", "left")] == pytest.approx(20.0)

    record = history.session(sid)
    assert record is not None
    [pain] = record.pain_reports
    assert (pain.at, pain.muscle, pain.side, pain.step_index) == (10.0, "piriformis", "left", 0)
    assert record.status == "running"


def test_time_in_the_step_under_way_is_on_disk_after_every_event(
    history: History, db_path: Path
) -> None:
    sid = history.begin(device=DEVICE, protocol="glute")
    history.record(step(0, "gluteus_maximus", at=5.0))
    history.record(Cue(at=35.0, device=DEVICE, message="-", step_index=0))
    with sqlite3.connect(db_path) as other:  # another reader sees the commit
        rows = other.execute("SELECT muscle, side, worked_s FROM muscle_time").fetchall()
        (worked,) = other.execute("SELECT worked_s FROM sessions WHERE id = ?", (sid,)).fetchone()
    assert rows == [("gluteus_maximus", "left", 30.0)]
    assert worked == 30.0


def test_exact_checkpoints_raise_the_estimate_and_step_ends_settle_it(history: History) -> None:
    sid = history.begin(device=DEVICE, protocol="glute")
    history.record(step(0, "gluteus_maximus", at=0.0))
    history.checkpoint(sid, {("gluteus_maximus", "left"): 12.25})
    assert times(history, sid) == {("gluteus_maximus", "left"): 12.25}
    history.record(completed(20.0, 0, "gluteus_maximus", 18.0))
    assert times(history, sid) == {("gluteus_maximus", "left"): 18.0}


def test_events_follow_the_session_begun_on_their_device(history: History) -> None:
    with pytest.raises(HistoryError, match="no session"):
        history.record(step(0, "gluteus_maximus"))
    first = history.begin(device=DEVICE, protocol="glute")
    second = history.begin(device=DEVICE, protocol="hamstrings")  # the first never ended
    old = history.session(first)
    assert old is not None
    assert (old.status, old.end_reason) == ("aborted", "interrupted")
    history.record(step(0, "hamstrings"))
    history.record(SessionCompleted(at=1.0, device=DEVICE, worked_s=0.0))
    history.record(Cue(at=2.0, device=DEVICE, message="late", step_index=0), second)  # ignored
    new = history.session(second)
    assert new is not None
    assert new.status == "completed"


def test_begin_refuses_an_unknown_source(history: History) -> None:
    with pytest.raises(ValueError, match="source"):
        history.begin(device=DEVICE, protocol="glute", source="web")  # type: ignore[arg-type]


# --- exposure over 48 hours -------------------------------------------------------------


def _past_session(
    store: History,
    now: datetime,
    hours_ago: float,
    muscle: str,
    side: str,
    worked: float,
    **kind: Any,
) -> None:
    device = f"dev-{muscle}-{side}-{hours_ago}-{kind}"
    started = now - timedelta(hours=hours_ago)
    sid = store.begin(device=device, protocol="glute", started_at=started, **kind)
    store.record(
        StepCompleted(
            at=1.0, device=device, step_index=0, muscle=muscle, side=side, worked_s=worked
        ),
        sid,
    )
    store.record(SessionCompleted(at=1.0, device=device, worked_s=worked), sid)


def test_exposure_counts_the_last_48_hours_only(history: History) -> None:
    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    _past_session(history, now, 1, "piriformis", "left", 60.0)
    _past_session(history, now, 47.9, "piriformis", "left", 45.0)
    _past_session(history, now, 48.1, "piriformis", "left", 90.0)  # too old
    _past_session(history, now, 200, "piriformis", "left", 90.0)  # far too old
    _past_session(history, now, 2, "piriformis", "right", 30.0)  # other side
    _past_session(history, now, 2, "gluteus_medius", "left", 30.0)  # other muscle
    _past_session(history, now, -1, "piriformis", "left", 30.0)  # after "now"

    assert history.exposure_s("piriformis", "left", now=now) == pytest.approx(105.0)
    assert history.exposure_s("piriformis", "right", now=now) == pytest.approx(30.0)
    assert history.exposure_s("adductors", "left", now=now) == 0.0
    later = now + timedelta(hours=47)
    assert history.exposure_s("piriformis", "left", now=later) == pytest.approx(60.0 + 30.0)


def test_simulated_and_real_sessions_never_count_toward_each_other(history: History) -> None:
    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    _past_session(history, now, 1, "piriformis", "left", 60.0)
    _past_session(history, now, 2, "piriformis", "left", 40.0, simulated=True)
    _past_session(history, now, 3, "piriformis", "left", 500.0, simulated=True, time_scale=10)

    assert history.exposure_s("piriformis", "left", now=now) == pytest.approx(60.0)
    # the simulator's own ledger: its real-time sessions; a faster-than-real demo never counts
    assert history.exposure_s("piriformis", "left", now=now, simulated=True) == pytest.approx(40.0)
    assert history.exposure(simulated=False).exposure_s("piriformis", "left") == 0.0  # 2025 is old
    kinds = [(r.simulated, r.time_scale) for r in history.sessions()]
    assert kinds == [(True, 10.0), (True, 1.0), (False, 1.0)]  # a time scale is always simulated
    assert [r.time_scale for r in history.sessions(simulated=False)] == [1.0]
    assert len(history.sessions(simulated=True)) == 2


def test_an_older_file_gains_the_simulated_flag_and_keeps_its_sessions(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:
        old.setattr(history_module, "MIGRATIONS", history_module.MIGRATIONS[:1])
        History(db_path).close()
    with sqlite3.connect(db_path) as first:  # a session as the first schema wrote it
        first.execute(
            "INSERT INTO sessions (id, started_at, updated_at, device, protocol, status, source, "
            "pid, host) VALUES (1, ?, ?, 'gun', 'glute', 'aborted', 'cli', 1, 'h')",
            (datetime.now(UTC).isoformat(), datetime.now(UTC).isoformat()),
        )
        first.execute("INSERT INTO muscle_time VALUES (1, 'piriformis', 'left', 5.0)")
        first.execute("INSERT INTO pain_reports VALUES (1, 1, 5.0, 'piriformis', 'left', 0)")
    with History(db_path) as store:
        assert store.schema_version == len(history_module.MIGRATIONS)
        (record,) = store.sessions()
        assert (record.simulated, record.time_scale) == (False, 1.0)  # what it was: a real one
        assert record.pain_reports[0].reported_at is None  # not known for old rows
        assert store.exposure_s("piriformis", "left") == pytest.approx(5.0)


def test_a_file_at_schema_version_4_takes_python_sessions_and_keeps_everything(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:  # a session as version 4 wrote it, with all that hangs on it
        old.setattr(history_module, "MIGRATIONS", history_module.MIGRATIONS[:4])
        with History(db_path) as store:
            sid = store.begin(device=DEVICE, protocol="glute", source="mqtt", simulated=True)
            store.record_score("before", 3, "thigh", session_id=sid, simulated=True)
            store.record(completed(40.0, 0, "piriformis", 30.0))
            store.record(
                PainReported(at=41.0, device=DEVICE, step_index=1, muscle="piriformis", side="left")
            )
            store.record(
                SessionAborted(at=41.0, device=DEVICE, reason="pain", message="pain", worked_s=30.0)
            )
            assert store.schema_version == 4
    with sqlite3.connect(db_path) as raw:
        raw.execute("INSERT INTO trace_marks VALUES (?, 1.0, 'warning', 'hot', '{}')", (sid,))

    with History(db_path) as store:
        assert store.schema_version == len(history_module.MIGRATIONS)
        (record,) = store.sessions()
        assert (record.id, record.source, record.simulated, record.status) == (
            sid,
            "mqtt",
            True,
            "aborted",
        )
        assert [(m.muscle, m.worked_s) for m in record.muscles] == [("piriformis", 30.0)]
        assert [p.step_index for p in record.pain_reports] == [1]
        assert [(s.moment, s.pain) for s in record.scores] == [("before", 3)]
        assert [m.label for m in store.trace(sid).marks if m.kind == "warning"] == ["hot"]
        python = store.begin(device="other", protocol="glute", source="python")
        assert store.session(python).source == "python"  # type: ignore[union-attr]

    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as raw:
        indexes = {
            row[0] for row in raw.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")
        }
        assert {"sessions_started_at", "sessions_running"} <= indexes
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # the rule still holds
            raw.execute(
                "INSERT INTO sessions (started_at, updated_at, device, protocol, status, source, "
                "pid, host) VALUES ('t', 't', 'gun', 'glute', 'running', 'web', 1, 'h')"
            )
        raw.execute("PRAGMA foreign_keys = ON")  # the children now hang on the new table
        raw.execute("DELETE FROM sessions WHERE id = ?", (sid,))
        assert raw.execute("SELECT COUNT(*) FROM muscle_time").fetchone() == (0,)
        assert raw.execute("SELECT session_id FROM scores").fetchall() == [(None,)]


def test_a_file_at_schema_version_5_keeps_its_visits_and_learns_where_new_ones_came_from(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:  # a visit as version 5 wrote it: from nowhere in particular
        old.setattr(history_module, "MIGRATIONS", history_module.MIGRATIONS[:5])
        with History(db_path) as store:
            assert store.schema_version == 5
    with sqlite3.connect(db_path) as raw:
        raw.execute(
            "INSERT INTO professional_visits (recorded_at, simulated, note) VALUES (?, 0, 'GP')",
            (datetime.now(UTC).isoformat(),),
        )
    with History(db_path) as store:
        assert store.schema_version == len(history_module.MIGRATIONS)
        before = store.last_professional()
        assert before is not None
        assert (before.note, before.source) == ("GP", None)  # not known for old rows
        store.record_professional("physio", source="mqtt", at=before.recorded_at + timedelta(1))
        after = store.last_professional()
        assert after is not None
        assert (after.note, after.source) == ("physio", "mqtt")
        with pytest.raises(ValueError, match="source"):
            store.record_professional(source="web")  # type: ignore[arg-type]
    with (
        contextlib.closing(sqlite3.connect(db_path)) as raw,
        pytest.raises(sqlite3.IntegrityError, match="CHECK"),
    ):
        raw.execute(
            "INSERT INTO professional_visits (recorded_at, simulated, note, source) "
            "VALUES ('t', 0, '', 'web')"
        )


def _pain(store: History, at: datetime, muscle: str, side: str, *, simulated: bool = False) -> None:
    device = f"pain-{at.isoformat()}-{simulated}"
    sid = store.begin(device=device, protocol="glute", started_at=at, simulated=simulated)
    store.record(PainReported(at=1.0, device=device, step_index=0, muscle=muscle, side=side), sid)
    with sqlite3.connect(store.path) as other:  # as if written at ``at``
        other.execute("UPDATE pain_reports SET reported_at = ?", (at.isoformat(),))


def test_a_pain_stop_blocks_its_side_until_local_midnight(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9: the local day and the UTC day differ
    time.tzset()
    try:
        pain = datetime(2025, 3, 10, 14, 2).astimezone()  # 14:02 in Tokyo, 05:02 UTC
        _pain(history, pain, "piriformis", "left")
        same_evening = datetime(2025, 3, 10, 23, 59).astimezone()  # 14:59 UTC
        next_morning = datetime(2025, 3, 11, 0, 1).astimezone()  # 15:01 UTC on the 10th
        assert history.pain_blocks(now=same_evening) == {("piriformis", "left"): pain}
        assert history.pain_blocks(now=next_morning) == {}  # still the 10th in UTC
        assert history.pain_blocks(now=same_evening, simulated=True) == {}  # real, not the sim's
        view = history.exposure(simulated=False)
        with monkeypatch.context() as m:
            m.setenv("GUNCTL_TEST_NOW", "2025-03-10T20:00:00")
            assert view.pain_blocks() == {("piriformis", "left"): "sharp pain at 14:02"}
            assert history.exposure(simulated=True).pain_blocks() == {}
    finally:
        monkeypatch.undo()
        time.tzset()


def test_exposure_counts_a_session_still_running(history: History) -> None:
    history.begin(device=DEVICE, protocol="glute")
    history.record(step(0, "piriformis", at=0.0))
    history.record(Cue(at=25.0, device=DEVICE, message="-", step_index=0))
    assert history.exposure_s("piriformis", "left") == pytest.approx(25.0)


def test_a_naive_time_is_local_time(history: History) -> None:
    local = datetime(2025, 3, 10, 12, 0)
    sid = history.begin(device=DEVICE, protocol="glute", started_at=local)
    record = history.session(sid)
    assert record is not None
    assert record.started_at == local.astimezone()


# --- listing and export -------------------------------------------------------------------


def test_sessions_since_and_in_order(history: History) -> None:
    now = datetime.now(UTC)
    for hours, device in [(30, "b"), (50, "a"), (1, "c")]:
        history.begin(device=device, protocol="glute", started_at=now - timedelta(hours=hours))
    assert [r.device for r in history.sessions()] == ["a", "b", "c"]
    assert [r.device for r in history.sessions(now - timedelta(hours=40))] == ["b", "c"]
    assert history.sessions(now + timedelta(hours=1)) == []


def test_export_csv_has_a_row_per_muscle_side(history: History) -> None:
    import csv

    sid = history.begin(device=DEVICE, protocol="glute")
    history.record(completed(10.0, 0, "gluteus_maximus", 9.0))
    history.record(completed(20.0, 1, "gluteus_maximus", 8.0, side="right"))
    history.record(SessionCompleted(at=20.0, device=DEVICE, worked_s=17.0))
    history.begin(device="other", protocol="hamstrings")  # no muscle time yet

    out = io.StringIO()
    assert history.export_csv(out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["session_id"], r["muscle"], r["side"], r["muscle_worked_s"]) for r in rows] == [
        (str(sid), "gluteus_maximus", "left", "9.0"),
        (str(sid), "gluteus_maximus", "right", "8.0"),
        (str(sid + 1), "", "", ""),
    ]
    assert rows[0]["status"] == "completed"
    assert rows[2]["status"] == "running"


# --- the file ---------------------------------------------------------------------------


def test_the_file_is_in_wal_mode_at_the_current_schema(history: History, db_path: Path) -> None:
    assert history.schema_version == len(history_module.MIGRATIONS)
    with sqlite3.connect(db_path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {r[0] for r in other.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "sessions", "muscle_time", "safety_stops", "pain_reports"} <= tables


def test_reopening_keeps_the_data(db_path: Path) -> None:
    with History(db_path) as store:
        sid = store.begin(device=DEVICE, protocol="glute")
        store.record(SessionCompleted(at=0.0, device=DEVICE, worked_s=0.0))
    with History(db_path) as store:
        assert [r.id for r in store.sessions()] == [sid]
        assert store.recovered == []


def test_a_later_migration_runs_once_on_an_older_file(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with History(db_path) as store:
        store.begin(device=DEVICE, protocol="glute")
    step_two = ("ALTER TABLE sessions ADD COLUMN note TEXT",)
    monkeypatch.setattr(history_module, "MIGRATIONS", [*history_module.MIGRATIONS, step_two])
    with History(db_path) as store:
        assert store.schema_version == len(history_module.MIGRATIONS)
        assert len(store.sessions()) == 1
    with History(db_path) as store:  # nothing left to do the second time
        assert store.schema_version == len(history_module.MIGRATIONS)


def test_a_file_from_a_newer_gunctl_is_refused(db_path: Path) -> None:
    History(db_path).close()
    with sqlite3.connect(db_path) as other:
        other.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(HistoryError, match="newer gunctl"):
        History(db_path)


def test_where_the_file_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUNCTL_DATA_DIR", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "history.sqlite3"
    with History() as store:
        assert store.path == tmp_path / "data" / "history.sqlite3"
    with History(tmp_path / "elsewhere.db") as store:  # an explicit path wins
        assert store.path == tmp_path / "elsewhere.db"
    monkeypatch.delenv("GUNCTL_DATA_DIR")
    assert default_path().name == "history.sqlite3"
    assert "gunctl" in str(default_path().parent)
