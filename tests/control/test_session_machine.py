"""The session state machine, driven tick by tick with no device."""

from __future__ import annotations

import pytest

from gunctl.control.events import Event
from gunctl.control.session import CUE, Phase, RequestRefusedError, Session
from gunctl.heads import Head
from gunctl.profiles.loader import load_catalogue
from gunctl.profiles.plan import PlanError, make_plan
from gunctl.specs.loader import load_specs

CATALOGUE = load_catalogue()
SPECS = load_specs()
DT = 0.02


def glute_session(**kwargs):
    plan = make_plan(
        CATALOGUE.protocols["glute"], CATALOGUE.muscles, SPECS["gunctl-open"], **kwargs
    )
    events: list[Event] = []
    session = Session(plan, "sim-1", events.append)
    session.start(0.0)
    return session, events


def run_for(session: Session, seconds: float, start: float = 0.0) -> list[float]:
    out = []
    t = start
    for _ in range(round(seconds / DT)):
        t += DT
        out.append(session.advance(t, DT, motor_on=True))
    return out


def run_to_end(session: Session) -> None:
    """Tick to the end, fitting each head as soon as it is asked for."""
    t = 0.0
    while not session.done:
        if session.phase is Phase.HEAD_CHANGE:
            session.confirm_head()
        t += DT
        session.advance(t, DT, motor_on=True)


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def test_first_step_waits_for_its_head_with_the_motor_stopped() -> None:
    session, events = glute_session()
    assert types(events) == ["head_change_required"]
    assert session.phase is Phase.HEAD_CHANGE
    assert max(run_for(session, 10)) == 0.0
    assert session.active_s == 0.0
    session.confirm_head()
    assert types(events)[-1] == "step_started"


def test_ramp_hold_cue_ramp_down_rest() -> None:
    session, events = glute_session()
    session.confirm_head()
    step = session.step
    assert step is not None
    levels = run_for(session, step.ramp_s + step.hold_s + step.ramp_s + step.rest_s - DT)
    ramp_ticks = round(step.ramp_s / DT)
    assert levels[ramp_ticks // 2] == pytest.approx(step.intensity / 2, abs=0.02)
    assert levels[ramp_ticks + 10] == step.intensity
    assert max(levels) == step.intensity
    assert levels[-1] == 0.0  # resting
    cues = [e for e in events if e.type == "cue"]
    assert len(cues) == 1
    assert cues[0].message == CUE
    assert cues[0].at == pytest.approx(step.ramp_s + 30, abs=DT)


def test_a_confirmation_only_when_the_head_changes() -> None:
    session, events = glute_session()
    run_to_end(session)
    changes = [(e.previous_head, e.step.head) for e in events if e.type == "head_change_required"]
    # glute: ball (maximus, medius), thumb (minimus), bullet (piriformis)
    assert changes == [(None, "ball"), ("ball", "thumb"), ("thumb", "bullet")]
    started = [e.step.head for e in events if e.type == "step_started"]
    assert started == [s.head.value for s in session.plan.steps]


def test_pause_freezes_the_step_and_resume_continues() -> None:
    session, events = glute_session()
    session.confirm_head()
    run_for(session, 10)
    before = session.remaining_s
    session.pause()
    assert max(run_for(session, 30)) == 0.0
    assert session.remaining_s == before
    session.resume()
    run_for(session, 1)
    assert session.remaining_s == pytest.approx(before - 1, abs=DT)
    assert types(events)[-2:] == ["paused", "resumed"]
    with pytest.raises(RequestRefusedError):
        session.resume()


def test_pain_ends_that_muscle_for_the_session_and_waits() -> None:
    session, events = glute_session()
    session.confirm_head()
    run_for(session, 20)
    session.pain()
    assert session.paused == "pain"
    assert types(events)[-4:-1] == ["pain_reported", "paused", "step_completed"]
    assert types(events)[-1] in {"step_started", "head_change_required"}  # the next muscle, waiting
    assert max(run_for(session, 5)) == 0.0
    remaining = [s.muscle for s in session.plan.steps[session.index :]]
    assert session.step.muscle != "gluteus-maximus"
    assert "gluteus-maximus" not in remaining


def test_skip_and_completion() -> None:
    session, events = glute_session()
    for _ in range(len(session.plan.steps) + 5):
        if session.done:
            break
        if session.phase is Phase.HEAD_CHANGE:
            session.confirm_head()
        session.skip()
    assert session.done
    assert types(events)[-1] == "session_completed"
    assert sum(1 for e in events if e.type == "step_completed") == len(session.plan.steps)
    with pytest.raises(RequestRefusedError):
        session.skip()


def test_full_glute_run_takes_the_planned_time() -> None:
    session, events = glute_session()
    run_to_end(session)
    assert session.active_s == pytest.approx(session.plan.planned_s, abs=0.1)
    assert types(events)[-1] == "session_completed"


# -- the plan ----------------------------------------------------------------


def test_plan_applies_the_lowest_cap_and_says_which() -> None:
    plan = make_plan(
        CATALOGUE.protocols["glute"], CATALOGUE.muscles, SPECS["theragun-gen4"], user_cap=0.32
    )
    for step in plan.steps:
        muscle = CATALOGUE.muscles[step.muscle]
        assert step.intensity <= min(muscle.intensity_cap, 0.32)
        assert step.ppm <= 1750 + 0.32 * (2400 - 1750)
    piriformis = [s for s in plan.steps if s.muscle == "piriformis"]
    assert {s.binding for s in piriformis} == {"step"}  # the protocol's 0.3 is gentler still
    assert {s.binding for s in plan.steps if s.muscle == "gluteus-maximus"} == {"user"}


def test_plan_maps_discrete_levels_at_or_below() -> None:
    plan = make_plan(CATALOGUE.protocols["glute"], CATALOGUE.muscles, SPECS["basic-5level"])
    levels = SPECS["basic-5level"].capabilities.levels_ppm
    for step in plan.steps:
        exact = levels[0] + step.intensity * (levels[-1] - levels[0])
        assert step.level is not None
        assert step.ppm == levels[step.level - 1] <= exact


def test_plan_refuses_a_head_the_person_does_not_own() -> None:
    with pytest.raises(PlanError, match="bullet head"):
        make_plan(
            CATALOGUE.protocols["glute"],
            CATALOGUE.muscles,
            SPECS["gunctl-open"],
            owned_heads={Head.BALL, Head.THUMB},
        )


def test_plan_one_side() -> None:
    session, _ = glute_session(side="right")
    assert {s.side for s in session.plan.steps} == {"right"}
