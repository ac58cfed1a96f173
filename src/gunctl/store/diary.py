"""The symptom diary's rules: when a person's own scores say to stop and see a professional.

A person may give a 0-10 pain score and how far down the leg the pain
reaches, before and after each session (``Score``). Two rules from the
sources act on them, as pre-start refusals beside the pain-stop block and the
48-hour exposure cap (``History.diary_refusal`` reads the data; the Supervisor
refuses the start, whoever asks for it):

- *Worsening* (seed 002: pain that is severe or worsening means stop
  self-massage and seek medical attention): any score at or above
  ``high_pain``; the last ``rising_sessions`` before-scores each at least the
  one before and rising by ``rising_points`` in all; or pain reaching further
  down the leg than any earlier score.
- *Not improving* (seed 004: no improvement after several weeks of consistent
  self-care makes a professional evaluation mandatory): over each of the last
  ``weeks`` weeks at least ``sessions_per_week`` real sessions, and the last
  week's mean before-score not down on the first week's by ``improve_points``
  nor by ``improve_percent`` of it. "Several weeks" is read as three by
  default; two to six may be set.

Both rules refuse until the person records that they have seen a doctor or
physiotherapist (``History.record_professional``); that record starts a new
baseline, so only scores and sessions after it count. Each refusal names its
rule and the scores and sessions that made it fire.

Every threshold is a setting (``DiarySettings``): the ``[diary]`` table of the
``gunctl serve`` configuration or ``GUNCTL_DIARY_*`` variables, read by every
command the same way (``gunctl.config.load_diary``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, computed_field

from gunctl.datafile import DataModel
from gunctl.errors import GunctlError, UnknownNameError

SEEK_MEDICAL = (
    "Stop self-massage and seek medical attention now. Once a doctor has seen you, record "
    "it with `gunctl diary seen`."
)
SEE_PROFESSIONAL = (
    "Several weeks of regular self-massage have not helped: a professional evaluation is "
    "needed to find the source. Once a doctor or physiotherapist has seen you, record it "
    "with `gunctl diary seen`; a new baseline starts then."
)

Moment = Literal["before", "after"]


class ScoreError(GunctlError, ValueError):
    """A score that cannot be recorded as given; the message says what is allowed."""


class Reach(StrEnum):
    """How far down the leg the pain reaches, nearest first."""

    BUTTOCK = "buttock"
    THIGH = "thigh"
    BELOW_KNEE = "below_knee"
    FOOT = "foot"

    @property
    def depth(self) -> int:
        return list(Reach).index(self)


class Score(DataModel):
    """One answer (or a skipped one) before or after a session."""

    recorded_at: datetime  # wall clock, UTC
    moment: Moment
    pain: int | None = Field(None, ge=0, le=10)
    reach: Reach | None = None
    skipped: bool = False  # asked, and the person chose not to answer
    session_id: int | None = None  # None until the session it was given for has begun

    def describe(self) -> str:
        if self.skipped:
            return "skipped"
        parts = [] if self.pain is None else [f"{self.pain}/10"]
        if self.reach is not None:
            parts.append(f"to the {self.reach.value.replace('_', ' ')}")
        return " ".join(parts)


class DiarySettings(DataModel):
    """The diary rules' thresholds: ``[diary]`` in the configuration, or ``GUNCTL_DIARY_<NAME>``."""

    high_pain: int = Field(8, ge=5, le=10, description="a score at or above this is severe")
    rising_sessions: int = Field(
        3, ge=2, le=5, description="before-scores in a row that must not fall to count as rising"
    )
    rising_points: int = Field(
        2, ge=1, le=5, description="the rise over those sessions that counts as worsening"
    )
    weeks: int = Field(3, ge=2, le=6, description='"several weeks" of consistent self-care')
    sessions_per_week: int = Field(
        2, ge=1, le=7, description="real sessions each of those weeks needs to be consistent"
    )
    improve_points: float = Field(
        2.0, ge=0.5, le=5, description="a fall in the weekly mean before-score that is improvement"
    )
    improve_percent: float = Field(
        30.0, ge=10, le=60, description="or a fall by this share of the first week's mean"
    )


@dataclass(frozen=True)
class DiaryData:
    """What the rules read: the scores and real sessions since the last professional visit."""

    now: datetime
    baseline: datetime | None  # when a professional was last seen, as recorded
    scores: Sequence[Score]  # oldest first
    sessions: Sequence[datetime]  # when each session that ran began, oldest first


@dataclass(frozen=True)
class DiaryVerdict:  # a dataclass, not a model: the rules build one on every start check
    """A refusal: which rule, on which data, and what to do."""

    rule: str
    message: str
    advice: str
    values: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}. {self.advice}"


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d")


def pain_severe(data: DiaryData, settings: DiarySettings) -> DiaryVerdict | None:
    severe = [s for s in data.scores if s.pain is not None and s.pain >= settings.high_pain]
    if not severe:
        return None
    worst = max(severe, key=lambda s: (s.pain or 0, s.recorded_at))
    return DiaryVerdict(
        "pain_severe",
        f"pain {worst.pain}/10 {worst.moment} the session of {_when(worst.recorded_at)}, at or "
        f"above {settings.high_pain}",
        SEEK_MEDICAL,
        {"pain": worst.pain, "high_pain": settings.high_pain, "at": worst.recorded_at.isoformat()},
    )


def for_sessions(scores: Sequence[Score]) -> list[Score]:
    """The scores that stand for sessions: each one's own, and the one given for the next.

    A before-score is tied to its session once that session begins; the newest
    untied one, given after the last tied one, is for the session being asked
    for now. Other untied before-scores (given with a start that was then
    refused, or answered again before a start) stay in the diary, and the
    severe and spreading rules read them, but no session followed them:
    counting them here would make three answers in a minute look like three
    sessions of rising pain, and let a burst of them move a week's mean.
    """
    next_one = None  # the newest before-score, if it is untied
    for score in scores:  # oldest first
        if score.moment == "before":
            next_one = score if score.session_id is None else None
    return [s for s in scores if s.moment == "after" or s.session_id is not None or s is next_one]


def pain_rising(data: DiaryData, settings: DiarySettings) -> DiaryVerdict | None:
    befores = [s for s in for_sessions(data.scores) if s.moment == "before" and s.pain is not None]
    last = befores[-settings.rising_sessions :]
    if len(last) < settings.rising_sessions:
        return None
    pains = [s.pain or 0 for s in last]
    if any(b < a for a, b in itertools.pairwise(pains)):
        return None
    if pains[-1] - pains[0] < settings.rising_points:
        return None
    listed = ", ".join(f"{s.pain} on {_when(s.recorded_at)}" for s in last)
    return DiaryVerdict(
        "pain_rising",
        f"pain before the last {len(last)} sessions rose {pains[-1] - pains[0]} points "
        f"({listed}); {settings.rising_points} or more is worsening",
        SEEK_MEDICAL,
        {"pains": pains, "rising_points": settings.rising_points},
    )


def pain_spreading(data: DiaryData, settings: DiarySettings) -> DiaryVerdict | None:
    reaches = [s for s in data.scores if s.reach is not None]
    if len(reaches) < 2:
        return None
    latest, earlier = reaches[-1], reaches[:-1]
    furthest = max(earlier, key=lambda s: s.reach.depth if s.reach else -1)
    assert latest.reach is not None
    assert furthest.reach is not None
    if latest.reach.depth <= furthest.reach.depth:
        return None
    return DiaryVerdict(
        "pain_spreading",
        f"pain reached the {latest.reach.value.replace('_', ' ')} on "
        f"{_when(latest.recorded_at)}, further down the leg than before (the "
        f"{furthest.reach.value.replace('_', ' ')} on {_when(furthest.recorded_at)})",
        SEEK_MEDICAL,
        {"reach": latest.reach.value, "before": furthest.reach.value},
    )


def not_improving(data: DiaryData, settings: DiarySettings) -> DiaryVerdict | None:
    """Weeks are counted back from now: week 1 is the oldest of the last ``weeks``."""
    start = data.now - timedelta(weeks=settings.weeks)
    if data.baseline is not None and data.baseline > start:
        return None  # fewer weeks than that since a professional last saw the person

    def week(n: int) -> tuple[datetime, datetime]:
        return start + timedelta(weeks=n), start + timedelta(weeks=n + 1)

    counts = []
    for n in range(settings.weeks):
        lo, hi = week(n)
        counts.append(sum(lo <= t < hi for t in data.sessions))
    if min(counts) < settings.sessions_per_week:
        return None  # not consistent self-care: the rule is about care that was kept up

    session_scores = for_sessions(data.scores)

    def mean(n: int) -> float | None:
        lo, hi = week(n)
        pains = [
            s.pain
            for s in session_scores
            if s.moment == "before" and s.pain is not None and lo <= s.recorded_at < hi
        ]
        return sum(pains) / len(pains) if pains else None

    first, last = mean(0), mean(settings.weeks - 1)
    if first is None or last is None or last == 0:
        return None  # no scores to compare, or no pain left
    fall = first - last
    if fall >= settings.improve_points or fall >= first * settings.improve_percent / 100:
        return None
    return DiaryVerdict(
        "not_improving",
        f"{settings.weeks} weeks of sessions ({', '.join(map(str, counts))} a week) and the "
        f"mean pain before them went from {first:.1f} in the first week to {last:.1f} in the "
        f"last; improvement is a fall of {settings.improve_points:g} points or "
        f"{settings.improve_percent:g}%",
        SEE_PROFESSIONAL,
        {
            "weeks": settings.weeks,
            "sessions_per_week": counts,
            "first_week_mean": round(first, 2),
            "last_week_mean": round(last, 2),
        },
    )


DiaryRule = Callable[[DiaryData, DiarySettings], DiaryVerdict | None]

# Worsening first: its advice (medical attention at once) is the more urgent.
DIARY_RULES: dict[str, DiaryRule] = {
    "pain_severe": pain_severe,
    "pain_rising": pain_rising,
    "pain_spreading": pain_spreading,
    "not_improving": not_improving,
}


def without(*names: str) -> dict[str, DiaryRule]:
    """The diary rules less ``names``: tests leave one out to prove it matters."""
    unknown = set(names) - set(DIARY_RULES)
    if unknown:
        raise UnknownNameError(f"no such diary rules: {sorted(unknown)}")
    return {name: rule for name, rule in DIARY_RULES.items() if name not in names}


def first_refusal(
    data: DiaryData, settings: DiarySettings, rules: dict[str, DiaryRule] | None = None
) -> DiaryVerdict | None:
    """The first rule in ``rules`` (all by default) that refuses a session, or None."""
    for rule in (DIARY_RULES if rules is None else rules).values():
        verdict = rule(data, settings)
        if verdict is not None:
            return verdict
    return None


# -- what a person looks at ---------------------------------------------------------


class Week(DataModel):
    """Seven whole days of the diary: sessions, minutes per muscle side, mean scores.

    Not a calendar week: the last one ends with today, so today's scores are in
    it. ``label`` names its first and last day ("11-25 to 12-01"), because
    "week of 11-25" reads as a calendar week and hides that today is in it.
    """

    start: datetime  # the first day's midnight, local time
    end: datetime  # the midnight after its last day (not in it)
    sessions: int
    minutes: dict[str, float]  # "muscle side" -> minutes worked
    before: float | None  # mean pain before sessions, None with no scores
    after: float | None

    @property
    def total_minutes(self) -> float:
        return sum(self.minutes.values())

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> str:
        """Its first and last day, local time: ``11-25 to 12-01``."""
        last = self.end.astimezone() - timedelta(days=1)
        return f"{self.start.astimezone():%m-%d} to {last:%m-%d}"


def days_end(now: datetime) -> datetime:
    """The local midnight that ends today: where the diary's last week ends."""
    local = now.astimezone()
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return midnight.replace(tzinfo=None).astimezone()  # the offset of that day (summer time)


def weekly(
    sessions: Sequence[tuple[datetime, dict[str, float]]],
    scores: Sequence[Score],
    end: datetime,
    weeks: int,
) -> list[Week]:
    """The last ``weeks`` weeks before ``end``, oldest first, from sessions and scores.

    ``sessions`` are (start, seconds per "muscle side") pairs.
    """
    result = []
    session_scores = for_sessions(scores)
    for n in range(weeks, 0, -1):
        lo, hi = end - timedelta(weeks=n), end - timedelta(weeks=n - 1)
        minutes: dict[str, float] = {}
        count = 0
        for started, worked in sessions:
            if lo <= started < hi:
                count += 1
                for key, seconds in worked.items():
                    minutes[key] = minutes.get(key, 0.0) + seconds / 60

        def mean(moment: Moment, lo: datetime = lo, hi: datetime = hi) -> float | None:
            pains = [
                s.pain
                for s in session_scores
                if s.moment == moment and s.pain is not None and lo <= s.recorded_at < hi
            ]
            return round(sum(pains) / len(pains), 2) if pains else None

        result.append(
            Week(
                start=lo,
                end=hi,
                sessions=count,
                minutes=minutes,
                before=mean("before"),
                after=mean("after"),
            )
        )
    return result


class Refusal(DataModel):
    """A diary refusal as a document: for Home Assistant, scripts and the Python API."""

    rule: str
    message: str
    advice: str


class DiarySummary(DataModel):
    """Where the diary stands now: the latest scores, this week's massage, any refusal."""

    last_before: Score | None
    last_after: Score | None
    minutes_this_week: float  # motor time in the last seven days, today included
    sessions_this_week: int
    refusal: Refusal | None  # set while a rule asks for a professional
