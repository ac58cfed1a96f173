"""`gunctl run` as a person and a script meet it: a real process, a real terminal.

Sessions run on the simulator at --time-scale 20 with a short test protocol
(a 30 s and a 45 s hold) from a profiles folder of the test's own, except the glute
run, which uses the shipped protocol on one side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pexpect
import pytest
from ruamel.yaml import YAML

from gunctl.resources import shipped

pytestmark = pytest.mark.slow

GUNCTL = str(Path(sys.executable).with_name("gunctl"))
SCALE = "20"
QUICK = """\
name: quick
title: Quick check
description: Two short holds, for tests.
steps:
  - {muscle: gluteus-maximus, side: left, head: ball, intensity: 0.4, hold_s: 30,
     ramp_s: 1, rest_s: 1, placement: Middle of the buttock.}
  - {muscle: piriformis, side: left, head: bullet, intensity: 0.3, hold_s: 45,
     ramp_s: 1, rest_s: 1, placement: Deep mid-buttock; keep the gun still.}
"""


def profiles(tmp_path: Path, **piriformis: Any) -> Path:
    """A user profiles folder with the quick protocol and, if asked, a stricter piriformis."""
    folder = tmp_path / "profiles"
    (folder / "protocols").mkdir(parents=True, exist_ok=True)
    (folder / "protocols" / "quick.yaml").write_text(QUICK)
    if piriformis:
        yaml = YAML()
        shipped_muscles = yaml.load(shipped("profiles") / "muscles.yaml")
        muscle = dict(shipped_muscles["muscles"]["piriformis"])
        muscle.update(piriformis)
        with (folder / "muscles.yaml").open("w") as f:
            yaml.dump({"muscles": {"piriformis": muscle}}, f)
    return folder


def env(tmp_path: Path, folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "GUNCTL_DATA_DIR": str(tmp_path / "data"),
        "GUNCTL_PROFILES": str(folder),
        "COLUMNS": "120",
    }


NEW_YORK_LATER = {"GUNCTL_TEST_NOW": "2030-01-15T22:00:00", "TZ": "America/New_York"}


def run(
    tmp_path: Path,
    folder: Path,
    *args: str,
    timeout: float = 60,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GUNCTL, "run", *args, "--sim", "--time-scale", SCALE],
        env={**env(tmp_path, folder), **(env_extra or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def history(tmp_path: Path, folder: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [GUNCTL, "history", "--json"],
        env=env(tmp_path, folder),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_a_completed_glute_run(tmp_path: Path) -> None:
    folder = profiles(tmp_path)
    result = run(tmp_path, folder, "glute", "--side", "left", "--yes", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    seen = events(result.stdout)
    assert seen[0]["type"] == "session_started"
    assert seen[-1]["type"] == "session_completed"
    assert [e["step"]["muscle"] for e in seen if e["type"] == "step_started"] == [
        "gluteus-maximus",
        "gluteus-medius",
        "gluteus-minimus",
        "piriformis",
    ]
    assert "not medical advice" in result.stderr  # the screen goes to stderr in --json mode
    (record,) = history(tmp_path, folder)
    assert record["status"] == "completed"
    assert {m["muscle"] for m in record["muscles"]} == {
        "gluteus-maximus",
        "gluteus-medius",
        "gluteus-minimus",
        "piriformis",
    }


def test_no_terminal_needs_yes(tmp_path: Path) -> None:
    result = run(tmp_path, profiles(tmp_path), "quick")
    assert result.returncode == 2
    assert "--yes" in result.stderr


def test_unknown_protocol_is_invalid_input(tmp_path: Path) -> None:
    result = run(tmp_path, profiles(tmp_path), "glutes", "--yes")
    assert result.returncode == 2
    assert "did you mean 'glute'" in result.stderr


def spawn(
    tmp_path: Path, folder: Path, *args: str, now: str | None = None, fitted: bool = True
) -> pexpect.spawn:
    """``gunctl run quick`` in a terminal, past the warning signs, the ball head fitted.

    ``now`` sets the wall clock (local time in New York) through GUNCTL_TEST_NOW.
    """
    when = {"GUNCTL_TEST_NOW": now, "TZ": "America/New_York"} if now else {}
    child = pexpect.spawn(
        GUNCTL,
        ["--log-level", "info", "run", "quick", "--sim", "--time-scale", SCALE, *args],
        env={**env(tmp_path, folder), **when},
        dimensions=(50, 120),
        encoding="utf-8",
        timeout=30,
    )
    child.expect("Do any of these apply to you now")
    child.plan_summary = child.before  # the plan comes before the question
    child.sendline("n")
    if fitted:
        child.expect("head change")
        child.send("\r")  # the ball head is on
        child.expect("hold")
    return child


def test_a_red_flag_refuses_the_session(tmp_path: Path) -> None:
    child = pexpect.spawn(
        GUNCTL,
        ["run", "quick", "--sim"],
        env=env(tmp_path, profiles(tmp_path)),
        encoding="utf-8",
        timeout=20,
    )
    child.expect("Do any of these apply to you now")
    child.sendline("y")
    child.expect("see a doctor or physiotherapist")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2


def test_pain_key_stops_at_once_and_ends_that_muscle(tmp_path: Path) -> None:
    folder = profiles(tmp_path)
    child = spawn(tmp_path, folder)
    child.send("p")
    child.expect("stop_requested")  # logged right after the stop frame went out
    child.expect("paused, motor stopped")
    child.send("q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    (record,) = history(tmp_path, folder)
    assert [(p["muscle"], p["side"]) for p in record["pain_reports"]] == [
        ("gluteus-maximus", "left")
    ]
    assert record["status"] == "aborted"


def test_a_pain_stop_blocks_that_side_until_midnight_local_time(tmp_path: Path) -> None:
    """Pain at 18:00 in New York; 21:00 the same evening is already the next day in UTC."""
    folder = profiles(tmp_path)
    child = spawn(tmp_path, folder, now="2030-01-15T18:00:00")
    child.send("p")  # on gluteus-maximus left
    child.expect("paused, motor stopped")
    child.send("q")
    child.expect(pexpect.EOF)
    child.close()

    evening = spawn(tmp_path, folder, now="2030-01-15T21:00:00", fitted=False)
    assert "skipped: gluteus-maximus left, sharp pain at 18:00" in evening.plan_summary
    evening.expect("Fit the BULLET head")  # straight to the piriformis: the ball step is gone
    evening.send("\r")
    evening.expect(pexpect.EOF)
    evening.close()
    assert evening.exitstatus == 0

    tomorrow = spawn(tmp_path, folder, now="2030-01-16T00:30:00", fitted=False)
    assert "skipped:" not in tomorrow.plan_summary, "the block outlived the day"
    tomorrow.expect("head change")
    tomorrow.send("\r")
    tomorrow.expect("gluteus.maximus · left")
    tomorrow.send("q")
    tomorrow.expect(pexpect.EOF)

    first, evening_run, next_day = history(tmp_path, folder)
    assert [(p["muscle"], p["side"]) for p in first["pain_reports"]] == [
        ("gluteus-maximus", "left")
    ]
    assert [m["muscle"] for m in evening_run["muscles"]] == ["piriformis"]
    assert evening_run["status"] == "completed"
    assert next_day["muscles"][0]["muscle"] == "gluteus-maximus"


def test_nothing_left_today_refuses_the_start(tmp_path: Path) -> None:
    folder = profiles(tmp_path)
    child = spawn(tmp_path, folder, "--side", "left", now="2030-01-15T09:00:00")
    child.send("p")
    child.expect("Fit the BULLET head")  # on to the piriformis, paused
    child.send("\r")
    child.send(" ")  # resume, then pain there too
    child.expect("hold")
    child.send("p")  # the last step: the session ends there
    child.expect(pexpect.EOF)
    result = run(tmp_path, folder, "quick", "--yes", env_extra=NEW_YORK_LATER)
    assert result.returncode == 3, result.stderr
    assert "nothing of quick is left to run today" in result.stderr
    assert "piriformis left, sharp pain at 09:0" in result.stderr


def test_ctrl_c_in_a_hold_stops_the_motor_first(tmp_path: Path) -> None:
    folder = profiles(tmp_path)
    child = spawn(tmp_path, folder)
    child.sendintr()
    child.expect("stop_requested")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    (record,) = history(tmp_path, folder)
    assert record["status"] == "aborted"
    assert record["end_reason"] == "stopped"


def test_a_safety_stop_exits_3_and_names_the_rule(tmp_path: Path) -> None:
    folder = profiles(tmp_path, force_cap_n=5)  # the simulated person leans in harder than 5 N
    result = run(tmp_path, folder, "quick", "--yes")
    assert result.returncode == 3, result.stderr
    assert "safety stop: force" in result.stderr
    (record,) = history(tmp_path, folder)
    assert record["end_reason"] == "force"
    assert record["safety_stops"][0]["rule"] == "force"


def _past(tmp_path: Path, muscle: str, worked_s: float, *, simulated: bool) -> None:
    """A session an hour ago that worked ``muscle`` (left) for ``worked_s``."""
    from gunctl.control.events import SessionCompleted, StepCompleted
    from gunctl.store.history import History

    (tmp_path / "data").mkdir(exist_ok=True)
    with History(tmp_path / "data" / "history.sqlite3") as store:
        device = f"{muscle}-{simulated}"
        store.begin(
            device=device,
            protocol="quick",
            simulated=simulated,
            started_at=datetime.now(UTC) - timedelta(hours=1),
        )
        store.record(
            StepCompleted(
                at=1, device=device, step_index=0, muscle=muscle, side="left", worked_s=worked_s
            )
        )
        store.record(SessionCompleted(at=1, device=device, worked_s=worked_s))


def test_the_simulators_own_48_hours_meet_the_exposure_cap(tmp_path: Path) -> None:
    folder = profiles(tmp_path, session_s_max=90, per_48h_s_max=90)
    _past(tmp_path, "piriformis", 47, simulated=True)  # on the simulator, in real time
    _past(tmp_path, "gluteus-maximus", 900, simulated=False)  # a person's: never counted here
    result = run(tmp_path, folder, "quick", "--yes")
    assert result.returncode == 3
    assert "exposure_48h: piriformis (left) has had 47 s" in result.stderr
    assert len(history(tmp_path, folder)) == 2  # it never started


def test_five_demos_in_a_row_complete_and_use_up_no_real_time(tmp_path: Path) -> None:
    """What ``make demo`` runs, five times on one data folder.

    Faster than the demo (scale 100, one side: each side keeps its own 48 hours,
    so without the simulated flag the fourth run would still be refused).
    """
    folder = profiles(tmp_path)
    for _ in range(5):
        result = subprocess.run(
            [GUNCTL, "run", "glute", "--sim", "--yes", "--time-scale", "100", "--side", "left"],
            env=env(tmp_path, folder),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
    records = history(tmp_path, folder)
    assert [(r["status"], r["simulated"], r["time_scale"]) for r in records] == [
        ("completed", True, 100.0)
    ] * 5
    from gunctl.store.history import History

    with History(tmp_path / "data" / "history.sqlite3") as store:
        assert store.exposure_s("piriformis", "left") == 0.0  # a person's 48 hours are untouched


def test_sigkill_mid_session_leaves_an_aborted_record(tmp_path: Path) -> None:
    folder = profiles(tmp_path)
    process = subprocess.Popen(
        [GUNCTL, "run", "quick", "--sim", "--time-scale", SCALE, "--yes", "--json"],
        env=env(tmp_path, folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        if event["type"] == "step_started" and event["step"]["index"] == 1:
            started = event["at"]
        if event["type"] == "cue" and event["step_index"] == 1:  # well into the piriformis hold
            break
    time.sleep(0.25)  # between writes: about 5 s of session time after the cue
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    (record,) = history(tmp_path, folder)
    assert record["status"] == "aborted"
    assert record["end_reason"] == "interrupted"
    worked = {m["muscle"]: m["worked_s"] for m in record["muscles"]}
    assert worked["gluteus-maximus"] == pytest.approx(32, abs=1)
    # the step under way errs high: at least what the motor ran before the kill
    ran_s = event["at"] - started + 0.25 * float(SCALE) * 0.8  # to the cue, then most of 5 s
    assert worked["piriformis"] >= ran_s


def test_cheap_checks_come_before_the_warning_sign_question(tmp_path: Path) -> None:
    child = pexpect.spawn(
        GUNCTL,
        ["run", "quick", "--sim", "--heads", "ball"],  # quick needs the bullet head too
        env=env(tmp_path, profiles(tmp_path)),
        encoding="utf-8",
        timeout=20,
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert "needs the bullet head" in child.before
    assert "Do any of these apply" not in child.before


def test_q_in_80_columns_is_a_quit_with_a_summary_and_the_motor_shown_stopped(
    tmp_path: Path,
) -> None:
    folder = profiles(tmp_path)
    child = pexpect.spawn(
        GUNCTL,
        ["run", "quick", "--sim", "--time-scale", SCALE],
        env={**env(tmp_path, folder), "COLUMNS": "80", "LINES": "24"},
        dimensions=(24, 80),
        encoding="utf-8",
        timeout=30,
    )
    child.expect("Do any of these apply to you now")
    child.sendline("n")
    child.expect("Enter head on · q quit")  # the whole footer fits in 80 columns
    child.send("\r")
    child.expect("hold")
    child.send("q")
    child.expect("aborted: quit")  # the summary after the display
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    (record,) = history(tmp_path, folder)
    assert (record["end_reason"], record["end_message"]) == ("quit", "you quit (q)")
