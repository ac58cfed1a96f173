"""A session whose writer dies is closed as interrupted, with the time it had recorded."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from store_events import DEVICE, dead_pid, step

from gunctl.control.events import Cue, StepCompleted
from gunctl.store.history import History

HAS_PROC = Path(f"/proc/{os.getpid()}/stat").exists()


def _set(db_path: Path, sid: int, **columns: object) -> None:
    assignments = ", ".join(f"{name} = ?" for name in columns)
    with sqlite3.connect(db_path) as db:
        db.execute(f"UPDATE sessions SET {assignments} WHERE id = ?", (*columns.values(), sid))


def _left_running(db_path: Path) -> int:
    """A session with one completed step and a second under way, as a writer left it."""
    with History(db_path) as store:
        sid = store.begin(device=DEVICE, protocol="glute")
        store.record(step(0, "gluteus_maximus", at=0.0))
        store.record(
            StepCompleted(
                at=50.0,
                device=DEVICE,
                step_index=0,
                muscle="gluteus_maximus",
                side="left",
                worked_s=45.0,
            )
        )
        store.record(step(1, "piriformis", at=50.0))
        store.record(Cue(at=62.0, device=DEVICE, message="-", step_index=1))
    return sid


def test_a_session_whose_process_is_gone_is_closed_as_interrupted(db_path: Path) -> None:
    sid = _left_running(db_path)
    with sqlite3.connect(db_path) as db:
        (last_heard,) = db.execute("SELECT updated_at FROM sessions").fetchone()
    pid = dead_pid()
    _set(db_path, sid, pid=pid)

    with History(db_path) as store:
        assert store.recovered == [sid]
        record = store.session(sid)
    assert record is not None
    assert record.status == "aborted"
    assert record.end_reason == "interrupted"
    assert record.end_message is not None
    assert f"pid {pid}" in record.end_message
    assert record.ended_at is not None
    assert record.ended_at.isoformat(timespec="microseconds") == last_heard
    times = {(m.muscle, m.side): m.worked_s for m in record.muscles}
    assert times == {("gluteus_maximus", "left"): 45.0, ("piriformis", "left"): 12.0}
    assert record.worked_s == pytest.approx(57.0)

    with History(db_path) as store:  # closed once, and stays closed
        assert store.recovered == []


def test_a_session_whose_process_lives_is_left_running(db_path: Path) -> None:
    sid = _left_running(db_path)  # written by this very process, which is alive
    with History(db_path) as store:
        assert store.recovered == []
        record = store.session(sid)
    assert record is not None
    assert record.status == "running"


def test_a_session_from_another_host_is_left_alone(db_path: Path) -> None:
    sid = _left_running(db_path)
    _set(db_path, sid, pid=dead_pid(), host="some-other-machine")
    with History(db_path) as store:
        assert store.recovered == []


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc to tell a reused pid")
def test_a_reused_pid_is_not_taken_for_the_writer(db_path: Path) -> None:
    sid = _left_running(db_path)
    _set(db_path, sid, proc_start="1")  # our pid, but a process that started long ago
    with History(db_path) as store:
        assert store.recovered == [sid]


WRITER = textwrap.dedent(
    """
    import sys, time
    from gunctl.control.events import Cue, SessionStarted, StepCompleted, StepInfo, StepStarted
    from gunctl.store.history import History
    from gunctl.store.trace import Sample

    D = "AA:BB:CC:DD:EE:01"

    def info(i, muscle):
        return StepInfo(index=i, muscle=muscle, side="right", head="ball", hold_s=60,
                        ppm=1800, placement="-")

    store = History(sys.argv[1])
    sid = store.begin(device=D, protocol="glute", spec="theragun-g4")
    store.record(SessionStarted(at=0, device=D, protocol="glute", steps=3, planned_s=240))
    store.record(StepStarted(at=1, device=D, step=info(0, "gluteus_medius")))
    store.record(StepCompleted(at=70, device=D, step_index=0, muscle="gluteus_medius",
                               side="right", worked_s=66.5))
    store.record(StepStarted(at=70, device=D, step=info(1, "gluteus_minimus")))
    store.record(Cue(at=78, device=D, message="-", step_index=1))
    store.record_score("before", 5, "thigh", session_id=sid)
    store.write_trace(sid, [Sample(at=t / 4, speed_ppm=1800, force_n=20) for t in range(20)])
    print("session", sid, flush=True)
    time.sleep(120)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_killed_writer_leaves_an_aborted_record_with_its_time(db_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        line = writer.stdout.readline()
        while line and not line.startswith("session "):  # log lines may come first
            line = writer.stdout.readline()
        sid = int(line.split()[1])
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=10) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()

    with History(db_path) as store:
        assert store.recovered == [sid]
        [record] = store.sessions()
        exposure = store.exposure_s("gluteus_medius", "right")
        trace = store.trace(sid)
    assert record.id == sid
    assert record.status == "aborted"
    assert record.end_reason == "interrupted"
    assert record.protocol == "glute"
    assert record.planned_s == 240
    assert record.pid == writer.pid
    times = {(m.muscle, m.side): m.worked_s for m in record.muscles}
    assert times == {("gluteus_medius", "right"): 66.5, ("gluteus_minimus", "right"): 8.0}
    assert exposure == 66.5
    assert [(s.moment, s.pain) for s in record.scores] == [("before", 5)]  # the diary survives
    assert len(trace.samples) == 20
    assert [m.label for m in trace.marks if m.kind == "step"] == [
        "gluteus_medius right",
        "gluteus_minimus right",
    ]
