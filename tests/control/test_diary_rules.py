"""The symptom diary's rules refuse a start, beside the pain block and the 48-hour caps.

Each case is weeks of sessions and scores written into a real history, dated
back from now (virtual weeks: nothing waits). Each rule refuses the start
of a Supervisor on its case, naming the rule and the data, and lets a near
miss through; with the rule left out, its case starts a session (the breach
goes unstopped), so each test can fail. A recorded visit to a professional
lifts the refusal and starts a new baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gunctl.clock import wall_now
from gunctl.control.events import SessionCompleted
from gunctl.control.supervisor import NoExposure
from gunctl.errors import RequestRefusedError
from gunctl.store.diary import DiaryRule, DiarySettings, DiaryVerdict, without
from gunctl.store.history import History

from rig import plan_for

pytestmark = pytest.mark.looptime(noop_cycles=1)

DEVICE = "diary-gun"
SIDE = ("gluteus-maximus", "left")


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "history.sqlite3", diary=DiarySettings())


def session(
    history: History,
    at: datetime,
    before: int | None = None,
    reach: str | None = None,
    after: int | None = None,
) -> int:
    """A real session that ran a minute at ``at``, with the scores given."""
    sid = history.begin(device=DEVICE, protocol="glute", started_at=at)
    history.checkpoint(sid, {SIDE: 60.0})
    history.record(SessionCompleted(at=60.0, device=DEVICE, worked_s=60.0), sid)
    if before is not None or reach is not None:
        history.record_score("before", before, reach, session_id=sid, at=at)
    if after is not None:
        history.record_score("after", after, session_id=sid, at=at + timedelta(minutes=15))
    return sid


def weeks(history: History, means: Sequence[float], per_week: int = 3) -> None:
    """``len(means)`` weeks back from now, ``per_week`` sessions each, before-scores at the mean."""
    now = wall_now()
    start = now - timedelta(weeks=len(means))
    for week, mean in enumerate(means):
        for n in range(per_week):
            at = start + timedelta(weeks=week, days=1 + 2 * n, hours=1)
            session(history, at, before=round(mean))


@dataclass
class Diary(NoExposure):
    """A Supervisor's exposure that reads the diary rules (``rules``) from a history."""

    history: History
    rules: dict[str, DiaryRule] | None = None

    def diary_refusal(self) -> DiaryVerdict | None:
        return self.history.diary_refusal(rules=self.rules)


async def refusal(rig_factory, history: History, **kwargs) -> str | None:
    """Start glute on a simulated gun: None if it starts, else the refusal."""
    rig = await rig_factory("gunctl-open", exposure=Diary(history, **kwargs))
    try:
        await rig.start(plan_for("glute", "gunctl-open"))
    except RequestRefusedError as exc:
        assert not rig.supervisor.running
        return str(exc)
    assert rig.supervisor.running
    return None


async def test_the_history_is_what_the_supervisor_reads(rig_factory, history: History) -> None:
    session(history, wall_now() - timedelta(days=1), before=9)
    rig = await rig_factory("gunctl-open", exposure=history.exposure(simulated=False))
    with pytest.raises(RequestRefusedError, match=r"^pain_severe: pain 9/10 before the session"):
        await rig.start(plan_for("glute", "gunctl-open"))
    assert history.exposure(simulated=True).diary_refusal() is None  # a demo is not refused


# -- worsening ---------------------------------------------------------------------


async def test_a_severe_score_refuses_until_a_doctor_is_recorded(
    rig_factory, history: History
) -> None:
    now = wall_now()
    session(history, now - timedelta(days=3), before=4, after=3)
    session(history, now - timedelta(days=1), before=5, after=8)
    refused = await refusal(rig_factory, history)
    assert refused is not None
    assert refused.startswith("pain_severe: pain 8/10 after the session of ")
    assert "at or above 8" in refused
    assert "seek medical attention" in refused
    assert "gunctl diary seen" in refused
    assert await refusal(rig_factory, history, rules=without("pain_severe")) is None
    history.record_professional("GP: no red flags")
    assert await refusal(rig_factory, history) is None


async def test_a_score_just_under_the_threshold_is_not_severe(
    rig_factory, history: History
) -> None:
    session(history, wall_now() - timedelta(days=1), before=7, after=7)
    assert await refusal(rig_factory, history) is None


async def test_before_scores_rising_two_points_over_three_sessions(
    rig_factory, history: History
) -> None:
    now = wall_now()
    for days, pain in ((5, 3), (3, 4), (1, 5)):
        session(history, now - timedelta(days=days), before=pain)
    refused = await refusal(rig_factory, history)
    assert refused is not None
    assert refused.startswith("pain_rising: pain before the last 3 sessions rose 2 points (3 on")
    assert await refusal(rig_factory, history, rules=without("pain_rising")) is None


@pytest.mark.parametrize(
    ("pains", "why"),
    [((3, 4, 4), "rose one point"), ((3, 6, 5), "fell once"), ((3, 5), "two sessions")],
)
async def test_near_misses_of_rising(rig_factory, history: History, pains, why) -> None:
    now = wall_now()
    for n, pain in enumerate(pains):
        session(history, now - timedelta(days=2 * (len(pains) - n)), before=pain)
    assert await refusal(rig_factory, history) is None, why


async def test_answers_given_with_refused_starts_are_not_sessions_of_rising_pain(
    rig_factory, history: History
) -> None:
    # three starts asked for within minutes, each refused before it ran (a session was
    # still running, say), each with a pain score: no session followed any of them
    now = wall_now()
    for minutes, pain in ((9, 3), (6, 4), (3, 5)):
        history.record_score("before", pain, at=now - timedelta(minutes=minutes))
    assert await refusal(rig_factory, history) is None


async def test_the_score_given_for_the_start_asked_for_now_counts_as_its_sessions(
    rig_factory, history: History
) -> None:
    now = wall_now()
    session(history, now - timedelta(days=3), before=3)
    session(history, now - timedelta(days=1), before=4)
    history.record_score("before", 1, at=now - timedelta(hours=2))  # its start was refused
    history.record_score("before", 5, at=now - timedelta(minutes=1))  # given for this start
    refused = await refusal(rig_factory, history)
    assert refused is not None
    assert refused.startswith("pain_rising: pain before the last 3 sessions rose 2 points (3 on")


async def test_pain_reaching_further_down_the_leg(rig_factory, history: History) -> None:
    now = wall_now()
    session(history, now - timedelta(days=4), before=4, reach="thigh")
    session(history, now - timedelta(days=2), before=4, reach="buttock")
    session(history, now - timedelta(days=1), before=3, reach="thigh")  # no further than before
    assert await refusal(rig_factory, history) is None
    session(history, now - timedelta(hours=3), before=3, reach="below_knee")
    refused = await refusal(rig_factory, history)
    assert refused is not None
    assert refused.startswith("pain_spreading: pain reached the below knee on ")
    assert "further down the leg than before (the thigh on" in refused
    assert await refusal(rig_factory, history, rules=without("pain_spreading")) is None
    history.record_professional()
    assert await refusal(rig_factory, history) is None


# -- not improving -------------------------------------------------------------------


async def test_three_consistent_weeks_without_improvement(rig_factory, history: History) -> None:
    weeks(history, [5, 5, 4])  # down one point, 20%: not the 2 points or 30% asked for
    refused = await refusal(rig_factory, history)
    assert refused is not None
    assert refused.startswith(
        "not_improving: 3 weeks of sessions (3, 3, 3 a week) and the mean pain before them "
        "went from 5.0 in the first week to 4.0 in the last"
    )
    assert "professional evaluation is needed" in refused
    assert await refusal(rig_factory, history, rules=without("not_improving")) is None
    history.record_professional("physio: piriformis, keep going")
    assert await refusal(rig_factory, history) is None  # a new baseline: weeks count from now


async def test_a_burst_of_answers_with_no_session_does_not_move_a_weeks_mean(
    rig_factory, history: History
) -> None:
    weeks(history, [5, 5, 5])
    now = wall_now()
    for n in range(20):  # zeros sent with starts that were all refused, hours ago
        history.record_score("before", 0, at=now - timedelta(hours=3, minutes=n))
    session(history, now - timedelta(hours=1), before=5)
    refused = await refusal(rig_factory, history)
    assert refused is not None
    assert refused.startswith("not_improving: 3 weeks of sessions (3, 3, 4 a week)")
    assert "from 5.0 in the first week to 5.0 in the last" in refused


@pytest.mark.parametrize(
    ("means", "per_week", "why"),
    [
        ([5, 4, 3], 3, "down two points"),
        ([3, 3, 2], 3, "down a third, under two points"),
        ([5, 5, 4], 1, "one session a week is not consistent"),
        ([5, 4], 3, "two weeks are not several"),
    ],
)
async def test_near_misses_of_not_improving(
    rig_factory, history: History, means, per_week, why
) -> None:
    weeks(history, means, per_week)
    assert await refusal(rig_factory, history) is None, why


async def test_the_number_of_weeks_is_a_setting(rig_factory, tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3", diary=DiarySettings(weeks=2))
    weeks(history, [5, 5])
    refused = await refusal(rig_factory, history)
    assert refused is not None
    assert refused.startswith("not_improving: 2 weeks of sessions")


def test_settings_out_of_range_are_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunctl.config import load_diary
    from gunctl.errors import ConfigError

    monkeypatch.setenv("GUNCTL_DIARY_WEEKS", "7")
    with pytest.raises(ConfigError, match=r"diary.weeks \(GUNCTL_DIARY_WEEKS\): Input should be"):
        load_diary()
    monkeypatch.setenv("GUNCTL_DIARY_WEEKS", "4")
    assert load_diary().weeks == 4
