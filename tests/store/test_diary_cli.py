"""``gunctl diary`` and ``gunctl history show``: the chart, the pictures, scores and visits.

The pictures are opened as images: their size, and pixels in the colours of
the plotted lines, which a blank canvas (a plot with no data) does not have.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import numpy
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from gunctl.cli.app import cli
from gunctl.clock import wall_now
from gunctl.control.events import (
    SafetyStop,
    SessionAborted,
    SessionCompleted,
    StepInfo,
    StepStarted,
)
from gunctl.store.history import History
from gunctl.store.trace import Sample

BLUE, ORANGE, GREEN, RED = (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)
STOP_RED = (255, 0, 0)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> History:
    monkeypatch.setenv("GUNCTL_DATA_DIR", str(tmp_path))
    return History(tmp_path / "history.sqlite3")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def four_weeks(store: History) -> None:
    """Four weeks of two sessions, pain before falling 6 -> 3 and after 4 -> 2."""
    now = wall_now()
    for week, (before, after) in enumerate([(6, 4), (5, 4), (4, 3), (3, 2)]):
        for day in (1, 4):
            at = now - timedelta(weeks=4 - week) + timedelta(days=day)
            sid = store.begin(device="gun", protocol="glute", started_at=at)
            store.checkpoint(sid, {("piriformis", "left"): 90.0, ("gluteus-maximus", "left"): 60})
            store.record(SessionCompleted(at=150.0, device="gun", worked_s=150.0), sid)
            store.record_score("before", before, "thigh", session_id=sid, at=at)
            store.record_score("after", after, session_id=sid, at=at + timedelta(minutes=20))


def pixels(path: Path, colour: tuple[int, int, int], box: tuple[int, int, int, int]) -> int:
    """How many pixels within ``box`` are near ``colour``."""
    image = numpy.asarray(Image.open(path).convert("RGB").crop(box), dtype=int)
    return int((numpy.abs(image - numpy.array(colour)).sum(axis=2) < 40).sum())


def test_the_weekly_chart_in_the_terminal_and_as_json(store: History) -> None:
    four_weeks(store)
    result = run("diary", "--weeks", "4")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "pain before" in lines[0]
    assert "██████████████████████████████"[:12] + " 6" in lines[1]  # 6/10 is 12 of 20 cells
    assert "piriformis left" in result.output
    assert "No diary rule refuses a session." in result.output
    weeks = json.loads(run("diary", "--weeks", "4", "--json").output)["weeks"]
    assert [(w["sessions"], w["before"], w["after"]) for w in weeks] == [
        (2, 6.0, 4.0),
        (2, 5.0, 4.0),
        (2, 4.0, 3.0),
        (2, 3.0, 2.0),
    ]
    assert weeks[0]["minutes"] == {"piriformis left": 3.0, "gluteus-maximus left": 2.0}


def test_today_is_in_the_last_row_under_a_label_that_says_so(store: History) -> None:
    """Rows are seven whole days ending today, named by their first and last day.

    A row labelled "week of 11-24" holding today's (12-01) score reads as a
    calendar week a week ago: the labels name both ends instead.
    """
    now = wall_now()
    today = now.astimezone().date()
    sid = store.begin(device="gun", protocol="glute", started_at=now - timedelta(days=7))
    store.checkpoint(sid, {("piriformis", "left"): 120.0})
    store.record(SessionCompleted(at=120.0, device="gun", worked_s=120.0), sid)
    store.record_score("before", 7)  # just now
    this_week = f"{today - timedelta(days=6):%m-%d} to {today:%m-%d}"
    last_week = f"{today - timedelta(days=13):%m-%d} to {today - timedelta(days=7):%m-%d}"
    result = run("diary", "--weeks", "2")
    assert result.exit_code == 0, result.output
    rows = {line.split()[2]: line for line in result.output.splitlines() if " to " in line[:16]}
    assert set(rows) == {today.strftime("%m-%d"), (today - timedelta(days=7)).strftime("%m-%d")}
    assert rows[today.strftime("%m-%d")].strip().startswith(this_week)
    assert "█ 7" in rows[today.strftime("%m-%d")]  # today's score, in the row ending today
    assert "week of" not in result.output
    weeks = json.loads(run("diary", "--weeks", "2", "--json").output)["weeks"]
    assert [(w["label"], w["sessions"], w["before"]) for w in weeks] == [
        (last_week, 1, None),
        (this_week, 0, 7.0),
    ]


def test_the_trend_picture_has_both_lines_and_the_bars(store: History, tmp_path: Path) -> None:
    four_weeks(store)
    picture = tmp_path / "trend.png"
    result = run("diary", "--weeks", "4", "--plot", str(picture))
    assert result.exit_code == 0, result.output
    image = Image.open(picture)
    assert image.format == "PNG"
    assert image.size == (1000, 600)
    top = (0, 0, 1000, 290)  # the pain panel
    assert pixels(picture, BLUE, top) > 300  # pain before
    assert pixels(picture, ORANGE, top) > 300  # pain after
    assert pixels(picture, BLUE, (0, 310, 1000, 600)) > 5000  # the minutes' bars

    empty = tmp_path / "empty.png"
    store.close()
    run("diary", "--weeks", "4", "--sim", "--plot", str(empty))  # nothing simulated: no lines
    assert pixels(empty, BLUE, top) == 0
    assert pixels(empty, ORANGE, top) == 0


def traced(store: History) -> int:
    """A session with two steps, a minute of trace, and a force stop at 50 s."""
    sid = store.begin(device="gun", protocol="glute")
    for index, (muscle, at, cap) in enumerate(
        [("gluteus-maximus", 1.0, 60.0), ("piriformis", 30.0, 35.0)]
    ):
        info = StepInfo(
            index=index, muscle=muscle, side="left", head="ball", hold_s=30, ppm=1800,
            placement="-", force_cap_n=cap,
        )  # fmt: skip
        store.record(StepStarted(at=at, device="gun", step=info), sid)
    store.write_trace(
        sid,
        [
            Sample(at=i / 4, speed_ppm=1750.0, force_n=20 + i / 8, temperature_c=30 + i / 40)
            for i in range(4 * 60)
        ],
    )
    store.record(
        SafetyStop(at=50.0, device="gun", rule="force", message="40 N", values={}, step_index=1),
        sid,
    )
    store.record(
        SessionAborted(at=50.0, device="gun", reason="force", message="-", worked_s=49), sid
    )
    return sid


def test_a_session_picture_has_speed_force_caps_temperature_and_the_stop(
    store: History, tmp_path: Path
) -> None:
    sid = traced(store)
    picture = tmp_path / "session.png"
    result = run("history", "show", str(sid), "--plot", str(picture))
    assert result.exit_code == 0, result.output
    assert "stopped by force" in result.output
    assert " 50.0 s  safety_stop: force" in result.output
    image = Image.open(picture)
    assert image.size == (1000, 600)
    everything = (0, 0, 1000, 600)
    assert pixels(picture, BLUE, everything) > 500  # speed
    assert pixels(picture, GREEN, everything) > 500  # force
    assert pixels(picture, RED, everything) > 500  # temperature (and the dotted force caps)
    assert pixels(picture, STOP_RED, everything) > 100  # the stop, across all three panels


def test_a_session_without_a_trace_has_no_picture(store: History, tmp_path: Path) -> None:
    sid = store.begin(device="gun", protocol="glute")
    result = CliRunner().invoke(
        cli, ["history", "show", str(sid), "--plot", str(tmp_path / "x.png")]
    )
    assert result.exit_code == 2
    assert "has no telemetry trace" in result.output
    assert not (tmp_path / "x.png").exists()
    missing = CliRunner().invoke(cli, ["history", "show", "99"])
    assert missing.exit_code == 2
    assert "there is no session 99" in missing.output


def test_scores_and_a_visit_from_the_command_line(store: History) -> None:
    sid = store.begin(device="gun", protocol="glute")
    store.checkpoint(sid, {("piriformis", "left"): 60.0})
    store.record(SessionCompleted(at=60.0, device="gun", worked_s=60.0), sid)
    result = run("diary", "score", "--after", "--pain", "9", "--reach", "foot")
    assert result.exit_code == 0, result.output
    assert f"Score after session {sid} recorded." in result.output
    assert "The next session will be refused: pain_severe: pain 9/10 after" in result.output
    assert "Refused until recorded: pain_severe" in run("diary").output
    assert "Professional last seen" not in run("diary").output
    assert "new baseline" in run("diary", "seen", "--note", "GP").output
    chart = run("diary").output
    assert "No diary rule refuses a session." in chart
    assert "recorded from cli (GP)" in chart.splitlines()[-1]
    seen = json.loads(run("diary", "--json").output)["professional_seen"]
    assert (seen["source"], seen["note"]) == ("cli", "GP")
    assert "skipped" in run("diary", "score", "--before").output

    rows = list(csv.DictReader(io.StringIO(run("history", "export").output)))
    assert (rows[0]["pain_after"], rows[0]["reach_after"]) == ("9", "foot")
    bad = CliRunner().invoke(cli, ["diary", "score", "--after", "--pain", "11"])
    assert bad.exit_code == 2
    assert "11 is not in the range 0<=x<=10" in bad.output
