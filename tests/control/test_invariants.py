"""Random protocols, random requests, random faults: the invariants hold in every run.

- no setpoint written above the cap of the step being worked (nor above its plan);
- no muscle side worked past its session cap, no hold past its muscle's limit;
- the motor is stopped when the session is over, however it ended.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gunctl.control.session import Phase
from gunctl.control.supervisor import RequestRefusedError
from gunctl.profiles.models import Protocol
from gunctl.profiles.plan import Plan, make_plan
from gunctl.specs.speed import setpoint_for
from gunsim import (
    CorruptFrames,
    DelayNotifications,
    DropLink,
    LowBattery,
    Overheat,
    ScriptedPerson,
    Silence,
    Stall,
    StuckMotor,
)

from rig import CATALOGUE, SPECS, open_rig

REACHABLE = sorted(m for m, muscle in CATALOGUE.muscles.items() if muscle.reachable)
FAULTS = [
    None,
    Silence(duration_s=1.0),
    DelayNotifications(delay_s=0.3, duration_s=2.0),
    CorruptFrames(count=5),
    DropLink(abrupt=True),
    Overheat(temperature_c=75),
    LowBattery(pct=4),
    Stall(),
    StuckMotor(),
]
REQUESTS = ["pause", "resume", "skip", "stop", "pain_stop", "confirm_head"]


@st.composite
def protocols(draw: st.DrawFn) -> Protocol:
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(REACHABLE))
        muscle = CATALOGUE.muscles[name]
        assert muscle.hold_s is not None
        steps.append(
            {
                "muscle": name,
                "side": draw(st.sampled_from(["left", "right", "both"])),
                "head": draw(st.sampled_from(sorted(muscle.heads.allowed))).value,
                "intensity": draw(st.floats(0.05, muscle.intensity_cap)),
                "hold_s": float(
                    draw(st.integers(int(muscle.hold_s.min), int(min(muscle.hold_s.max, 45))))
                ),
                "ramp_s": float(draw(st.integers(0, 3))),
                "rest_s": float(draw(st.integers(0, 4))),
                "placement": "on muscle",
            }
        )
    return Protocol.model_validate(
        {"name": "random", "title": "random", "description": "random", "steps": steps}
    )


def check_caps(plan: Plan, rig) -> None:
    """Every set_speed/set_level the device received was at or under the step's caps."""
    starts = {e.step.index: e.at for e in rig.of("step_started")}
    ends = {e.step_index: e.at for e in rig.of("step_completed")}
    last = rig.events[-1].at if rig.events else 0.0
    for command in rig.device.commands:
        kind = command.command.kind
        if kind not in ("set_speed", "set_level"):
            continue
        running = [
            s
            for s in plan.steps
            if starts.get(s.index, 1e9) <= command.at <= ends.get(s.index, last + 5)
        ]
        assert running, f"{kind} at {command.at} outside any step"
        written = (
            command.command.ppm
            if kind == "set_speed"
            else plan_level_ppm(rig, command.command.level)
        )
        # At the instant a skip ends one step and starts the next, a write of that same
        # instant may belong to either (the clock cannot order them): it must fit one of them.
        limits = [
            min(setpoint_for(s.cap, rig.supervisor.spec.capabilities).ppm, s.ppm) for s in running
        ]
        assert written <= max(limits), (command, running)


def plan_level_ppm(rig, level: int) -> int:
    levels = rig.supervisor.spec.capabilities.levels_ppm
    return levels[level - 1]


@pytest.mark.looptime(noop_cycles=1)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    family=st.sampled_from(sorted(SPECS)),
    protocol=protocols(),
    user_cap=st.floats(0.1, 1.0),
    requests=st.lists(st.tuples(st.floats(0.5, 60), st.sampled_from(REQUESTS)), max_size=5),
    fault=st.tuples(st.floats(1, 80), st.sampled_from(FAULTS)),
    force=st.floats(0, 120),
)
async def test_invariants_hold(family, protocol, user_cap, requests, fault, force) -> None:
    plan = make_plan(protocol, CATALOGUE.muscles, SPECS[family], user_cap=user_cap)
    person = ScriptedPerson([(5.0, 10.0), (30.0, force), (400.0, 15.0)])
    async with open_rig(family, rate_hz=25, device={"person": person}) as rig:
        await rig.start(plan)
        fault_at, injected = fault
        if injected is not None:
            rig.device.faults.schedule(fault_at, injected)
        waited = 0.0
        for at, kind in sorted(requests):
            await asyncio.sleep(at - waited)
            waited = at
            if rig.supervisor.running or kind == "stop":
                with contextlib.suppress(
                    RequestRefusedError
                ):  # a refusal is fine; anything else fails
                    await rig.send(kind)
        session = rig.supervisor.session
        if rig.supervisor.running and session is not None and session.paused is not None:
            await rig.send("resume")  # a person who paused (or reported pain) carries on
        end = await rig.finish(timeout=900)
        await asyncio.sleep(3)

        check_caps(plan, rig)
        session = rig.supervisor.session
        assert session is not None
        assert session.phase is Phase.DONE
        for (muscle, side), worked in session.worked.items():
            limit = CATALOGUE.muscles[muscle].session_s_max
            assert worked <= limit + 0.1, (muscle, side, worked)
        for step in plan.steps:
            assert step.hold_s <= step.hold_max_s
        state = rig.device.state
        assert not state.running or not state.connected, (end, state)
        assert state.speed_ppm < 200 or injected == StuckMotor(), (end, state)
