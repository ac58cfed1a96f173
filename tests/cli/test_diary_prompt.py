"""The diary's questions in a real terminal: before a session, after it, and a refusal.

``gunctl run`` asks them of a session in real time only (a demo faster than
real time asks no one), so these run the simulator at scale 1 and quit in the
first hold.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pexpect
import pytest
from test_run import GUNCTL, env, profiles

pytestmark = pytest.mark.slow


def spawn(tmp_path: Path, folder: Path) -> pexpect.spawn:
    child = pexpect.spawn(
        GUNCTL,
        ["run", "quick", "--sim"],
        env=env(tmp_path, folder),
        dimensions=(50, 120),
        encoding="utf-8",
        timeout=30,
    )
    child.expect("Do any of these apply to you now")
    child.sendline("n")
    child.expect(r"how is the pain now, before the session\?")
    child.expect(r"Pain, 0 \(none\) to 10 \(worst\)")
    return child


def gunctl(tmp_path: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``gunctl ARGS`` with no terminal, on the test's data folder."""
    return subprocess.run(
        [GUNCTL, *args],
        env=env(tmp_path, folder),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )


def history(tmp_path: Path, folder: Path) -> list[dict[str, Any]]:
    return json.loads(gunctl(tmp_path, folder, "history", "--json").stdout)


def test_scores_before_and_after_a_session_with_a_bad_answer_asked_again(tmp_path: Path) -> None:
    folder = profiles(tmp_path)
    child = spawn(tmp_path, folder)
    child.sendline("12")
    child.expect("'12': give a whole number from 0 to 10, or Enter to skip")
    child.sendline("6")
    child.expect("How far does it reach")
    child.sendline("knee")
    child.expect("'knee': give one of buttock, thigh, below_knee, foot")
    child.sendline("thigh")
    child.expect("Recorded.")
    child.expect("head change")
    child.send("\r")
    child.expect("hold")
    child.send("q")
    child.expect(r"how is the pain now, after the session\?")
    child.expect("Pain, 0")
    child.sendline("")  # skipped
    child.expect("Recorded as skipped.")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130  # q
    (record,) = history(tmp_path, folder)
    assert [(s["moment"], s["pain"], s["reach"], s["skipped"]) for s in record["scores"]] == [
        ("before", 6, "thigh", False),
        ("after", None, None, True),
    ]
    assert record["simulated"] is True  # the simulator's diary, apart from a person's


def test_a_severe_score_before_refuses_the_session_and_the_next(tmp_path: Path) -> None:
    folder = profiles(tmp_path)
    child = spawn(tmp_path, folder)
    child.sendline("9")
    child.expect("How far does it reach")
    child.sendline("")
    child.expect("refused: pain_severe: pain 9/10 before")
    child.expect("seek medical attention")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
    assert history(tmp_path, folder) == []  # refused before anything began

    again = gunctl(tmp_path, folder, "run", "quick", "--sim", "--yes")
    assert again.returncode == 3
    assert "refused: pain_severe" in again.stderr
    assert gunctl(tmp_path, folder, "diary", "seen", "--sim").returncode == 0
    child = spawn(tmp_path, folder)  # asked again: the refusal is lifted
    child.sendline("")
    child.expect("Recorded as skipped.")
    child.expect("head change")
    child.terminate(force=True)
